package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/auth"
)

// knownParams is what each route must accept, by "METHODS path": a route
// added to the table without an entry here fails TestUnknownParameters.
// A flagged parameter (route.flagged) is listed as "flag>name", e.g.
// "recurse>limit": known only with the flag on.
var knownParams = map[string][]string{
	"GET,POST /set":                {"key", "value", "cas", "requestId"},
	"GET,HEAD,POST /get":           {"key", "consistency", "minIndex", "min_index"},
	"GET,POST /remove":             {"key", "cas", "requestId"},
	"GET,HEAD /kv/":                {"consistency", "minIndex", "min_index", "index", "wait", "recurse", "recurse>keys", "recurse>separator", "recurse>limit", "recurse>after", "recurse>count"},
	"GET /watch/":                  {"index"},
	"PUT,DELETE /kv/":              {"cas", "requestId", "recurse", "ttl", "lease"},
	"POST /txn":                    {"requestId"},
	"POST /kv/":                    {"touch", "requestId"},
	"POST /leases":                 {"ttl", "requestId"},
	"GET,HEAD /leases/":            {"consistency"},
	"POST,DELETE /leases/":         {"requestId"},
	"POST /locks/":                 {"lease", "wait"},
	"DELETE /locks/":               {"token"},
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
	"GET,HEAD /ui":                 nil,
	"GET,HEAD /ui/":                nil,
	"GET,HEAD /auth/whoami":        nil,
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
	case rt.Path == "/leases/":
		return "/leases/1"
	case rt.Path == "/locks/":
		return "/locks/a"
	case rt.Path == "/ui/":
		return "/ui/app.js"
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
		declared := slices.Clone(rt.Params)
		for flag, ps := range rt.Flagged {
			if !slices.Contains(rt.Params, flag) {
				t.Errorf("%s: flag %q of flagged parameters %v is not a parameter of the route", name, flag, ps)
			}
			for _, p := range ps {
				declared = append(declared, flag+">"+p)
			}
		}
		if !slices.Equal(sorted(declared), sorted(want)) {
			t.Errorf("%s knows %v, want %v", name, declared, want)
		}
		if rt.Form != slices.Contains(formRoutes, name) {
			t.Errorf("%s: reads a form body %v, want %v (formRoutes)", name, rt.Form, !rt.Form)
		}
		for _, m := range rt.Methods {
			forms := []string{"query"}
			if m == http.MethodPost && rt.Form {
				forms = append(forms, "form")
			}
			for _, how := range forms {
				t.Run(m+" "+rt.Path+" by "+how, func(t *testing.T) {
					applied, calls := st.f.AppliedIndex(), len(st.calls)
					target, body, hdr := concrete(rt)+"?tll=2&cass=0", "", http.Header(nil)
					if how == "form" {
						target, body, hdr = concrete(rt), "tll=2&cass=0", form
					}
					rec := call(s, m, target, body, hdr)
					if rec.Code != http.StatusBadRequest {
						t.Fatalf("status %d, want 400: %s", rec.Code, rec.Body)
					}
					if m == http.MethodHead {
						return // no body to read
					}
					b := errorOf(t, rec)
					if b.Code != "bad_request" || !strings.Contains(b.Error, `"tll"`) || !strings.Contains(b.Error, `"cass"`) {
						t.Fatalf("error does not name both unknown parameters: %+v", b)
					}
					for _, p := range declared {
						_, p, _ = strings.Cut(p, ">")
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
			for _, d := range declared {
				flag, p, flagged := strings.Cut(d, ">")
				if !flagged {
					flag, p = "", d
				}
				for _, how := range forms {
					t.Run(m+" "+rt.Path+" knows "+d+" by "+how, func(t *testing.T) {
						v := url.Values{p: {"1"}}
						if flagged {
							v.Set(flag, "true")
						}
						target, body, hdr := concrete(rt)+"?"+v.Encode(), "", http.Header(nil)
						if how == "form" {
							target, body, hdr = concrete(rt), v.Encode(), form
						}
						// A watch streams and a blocking query waits: end
						// them soon, they only need to start.
						rec := callWithin(s, 200*time.Millisecond, m, target, body, hdr)
						if strings.Contains(rec.Body.String(), "unknown parameter") || strings.Contains(rec.Body.String(), " only with ") {
							t.Fatalf("known parameter %q refused: %s", p, rec.Body)
						}
					})
				}
			}
		}
	}
	for name := range knownParams {
		if !seen[name] {
			t.Errorf("knownParams lists %s, which is not a route", name)
		}
	}
}

// formRoutes are the routes whose POST may carry its parameters in a form
// body; every other route leaves its body to the handler.
var formRoutes = []string{
	"GET,POST /set", "GET,HEAD,POST /get", "GET,POST /remove", "GET,POST /join", "POST /leave",
	"POST /snapshot", "POST /promote", "POST /transfer-leadership",
}

// TestFlaggedParameters: a route's flagged parameters are known only with
// their flag on, in the query or a form body; without it the 400 names
// the flag, and nothing reaches the handler.
func TestFlaggedParameters(t *testing.T) {
	s, _, _ := newFakeService(t, Options{})
	var got url.Values
	rt := &route{
		path: "/r", methods: post, role: auth.RolePublic, form: true,
		params:  []string{"recurse", "consistency"},
		flagged: []flagged{{flag: "recurse", params: []string{"limit", "after"}}},
		serve: func(w http.ResponseWriter, _ *http.Request, p params) error {
			got = p.values
			w.WriteHeader(http.StatusNoContent)
			return nil
		},
	}
	h := s.adapt(rt)
	tests := []struct {
		name, query, body string
		want              int
		mention           []string // in the 400's message
	}{
		{"flag and flagged", "recurse&limit=5", "", 204, nil},
		{"flag true, both flagged", "recurse=true&limit=5&after=a", "", 204, nil},
		{"flag alone", "recurse", "", 204, nil},
		{"neither", "consistency=stale", "", 204, nil},
		{"flag in query, flagged in form", "recurse=1", "limit=5", 204, nil},
		{"flag in form, flagged in query", "limit=5", "recurse=1", 204, nil},
		{"malformed flag counts as on (the handler refuses it)", "recurse=maybe&limit=5", "", 204, nil},
		{"flagged without flag", "limit=5", "", 400, []string{`"limit"`, "only with recurse", "with recurse also limit, after"}},
		{"flagged with flag off", "recurse=false&limit=5&after=b", "", 400, []string{`"limit", "after"`, "only with recurse"}},
		{"flagged with flag 0, in form", "recurse=0", "after=b", 400, []string{`"after"`, "only with recurse"}},
		{"unknown still unknown", "recurse&limits=5", "", 400, []string{`unknown parameter "limits"`, "takes only recurse, consistency; with recurse also limit, after"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got = nil
			req := httptest.NewRequest(http.MethodPost, "/r?"+tt.query, strings.NewReader(tt.body))
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want != 204 {
				if got != nil {
					t.Errorf("refused request reached the handler with %v", got)
				}
				b := errorOf(t, rec)
				for _, m := range tt.mention {
					if b.Code != "bad_request" || !strings.Contains(b.Error, m) {
						t.Errorf("error %+v does not say %q", b, m)
					}
				}
				return
			}
			q, _ := url.ParseQuery(tt.query)
			f, _ := url.ParseQuery(tt.body)
			for k := range f {
				q[k] = f[k]
			}
			if !reflect.DeepEqual(got, q) {
				t.Errorf("handler got %v, want %v (query and form, parsed once)", got, q)
			}
		})
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
