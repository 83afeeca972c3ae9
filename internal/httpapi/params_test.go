package httpapi

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// knownParams is what each route must accept, by "METHODS path": a route
// added to the table without an entry here fails TestUnknownParameters.
var knownParams = map[string][]string{
	"GET,POST /set":                {"key", "value", "cas", "requestId"},
	"GET,HEAD,POST /get":           {"key", "consistency", "minIndex", "min_index"},
	"GET,POST /remove":             {"key", "cas", "requestId"},
	"GET,HEAD /kv/":                {"consistency", "minIndex", "min_index"},
	"PUT,DELETE /kv/":              {"cas", "requestId"},
	"POST /txn":                    {"requestId"},
	"GET,POST /join":               {"nodeId", "raftPort", "raftAddr", "httpAddr", "voter"},
	"POST /leave":                  {"nodeId"},
	"GET,HEAD /nodes":              {"stale"},
	"GET,HEAD /status":             nil,
	"POST /snapshot":               nil,
	"POST /promote":                {"nodeId"},
	"POST /transfer-leadership":    {"nodeId"},
	"GET,HEAD /backup":             nil,
	"POST /restore":                nil,
	"GET,HEAD /health":             nil,
	"GET,HEAD /ready":              nil,
	"GET,HEAD /metrics":            nil,
	"POST /internal/apply":         nil,
	"POST /internal/readindex":     nil,
	"GET /internal/info":           nil,
	"GET /debug/pprof/cmdline":     nil,
	"GET /debug/pprof/profile":     {"seconds"},
	"GET,POST /debug/pprof/symbol": nil,
	"GET /debug/pprof/trace":       {"seconds"},
	"GET /debug/pprof/":            {"debug", "gc", "seconds"},
}

// concrete is a path that route path serves.
func concrete(rt RouteRole) string {
	switch {
	case rt.Path == "/kv/":
		return "/kv/k"
	case rt.Path == "/debug/pprof/":
		return "/debug/pprof/heap"
	}
	return rt.Path
}

// TestUnknownParameters: every route, by every method and on both API
// forms (query and form body), refuses a parameter it does not know with
// a 400 that names it and the ones the route knows, and changes nothing;
// every parameter it knows is not refused as unknown.
func TestUnknownParameters(t *testing.T) {
	s, st, _ := newFakeService(t, Options{EnablePprof: true})
	st.set("k", "v")
	seen := map[string]bool{}
	for _, rt := range s.Routes() {
		name := strings.Join(rt.Methods, ",") + " " + rt.Path
		seen[name] = true
		want, listed := knownParams[name]
		if !listed {
			t.Errorf("route %s is not in knownParams: list the parameters it takes", name)
			continue
		}
		if !slices.Equal(sorted(rt.Params), sorted(want)) {
			t.Errorf("%s knows %v, want %v", name, rt.Params, want)
		}
		for _, m := range rt.Methods {
			forms := []string{"query"}
			// POST /txn's body is its JSON transaction, never a form.
			if m == http.MethodPost && len(rt.Params) > 0 && rt.Path != "/txn" || rt.Path == "/snapshot" {
				forms = append(forms, "form")
			}
			for _, how := range forms {
				t.Run(m+" "+rt.Path+" by "+how, func(t *testing.T) {
					applied, calls := st.f.AppliedIndex(), len(st.calls)
					target, body, hdr := concrete(rt)+"?ttl=2&cass=0", "", http.Header(nil)
					if how == "form" {
						target, body, hdr = concrete(rt), "ttl=2&cass=0", form
					}
					rec := call(s, m, target, body, hdr)
					if rec.Code != http.StatusBadRequest {
						t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
					}
					if m == http.MethodHead {
						return // no body to read
					}
					b := errorOf(t, rec)
					if b.Code != "bad_request" || !strings.Contains(b.Error, `"ttl"`) || !strings.Contains(b.Error, `"cass"`) {
						t.Fatalf("error does not name both unknown parameters: %+v", b)
					}
					for _, p := range rt.Params {
						if !strings.Contains(b.Error, p) {
							t.Errorf("error does not list known parameter %q: %s", p, b.Error)
						}
					}
					if st.f.AppliedIndex() != applied || len(st.calls) != calls {
						t.Fatalf("refused request changed something: applied %d→%d, calls %v", applied, st.f.AppliedIndex(), st.calls[calls:])
					}
				})
			}
			if strings.HasPrefix(rt.Path, "/debug/pprof/") || m == http.MethodHead {
				continue // pprof's own parameters would start a profile
			}
			for _, p := range rt.Params {
				t.Run(m+" "+rt.Path+" knows "+p, func(t *testing.T) {
					rec := call(s, m, concrete(rt)+"?"+url.Values{p: {"1"}}.Encode(), "", nil)
					if strings.Contains(rec.Body.String(), "unknown parameter") {
						t.Fatalf("known parameter %q refused: %s", p, rec.Body)
					}
				})
			}
		}
	}
	for name := range knownParams {
		if !seen[name] {
			t.Errorf("knownParams lists %s, which is not a route", name)
		}
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
