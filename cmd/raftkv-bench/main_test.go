package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/bench"
)

func TestParseFlags(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		check  func(*testing.T, bench.Config, options)
		errHas string
	}{
		{"defaults", nil, func(t *testing.T, c bench.Config, o options) {
			d := bench.DefaultConfig()
			if c.Targets[0] != "http://127.0.0.1:8000" || c.Concurrency != 16 || c.Duration != 10*time.Second ||
				c.Requests != 0 || c.Keys != 10000 || c.ValueSize != 100 || c.Ratio != d.Ratio ||
				c.Consistency != "linearizable" || c.Kind != bench.KindRaftkv || c.Prefix != "bench/" ||
				c.Warmup != time.Second || c.Timeout != 10*time.Second || c.Preload || o.json || !o.progress || c.Progress == nil {
				t.Errorf("defaults: %+v %+v", c, o)
			}
		}, ""},
		{"everything", []string{"-targets", " http://a:1, http://b:2 ,", "-target-kind", "etcd", "-c", "64", "-n", "500", "-d", "3s",
			"-keys", "7", "-value-size", "65536", "-ratio", "0.1", "-consistency", "stale", "-prefix", "p/", "-warmup", "0",
			"-json", "-progress=false", "-preload", "-timeout", "2s", "-seed", "9"},
			func(t *testing.T, c bench.Config, o options) {
				if strings.Join(c.Targets, " ") != "http://a:1 http://b:2" || c.Kind != bench.KindEtcd || c.Concurrency != 64 ||
					!c.CountMode() || c.Requests != 500 || c.Keys != 7 || c.ValueSize != 65536 || c.Ratio != 0.1 ||
					c.Consistency != "stale" || c.Prefix != "p/" || c.Warmup != 0 || !o.json || o.progress || c.Progress != nil ||
					!c.Preload || c.Timeout != 2*time.Second || c.Seed != 9 {
					t.Errorf("parsed: %+v %+v", c, o)
				}
			}, ""},
		{"multi-key workloads", []string{"-workload", "list", "-limit", "250", "-preload-batch", "100"},
			func(t *testing.T, c bench.Config, o options) {
				if c.Workload != bench.WorkloadList || c.ListLimit != 250 || c.PreloadBatch != 100 {
					t.Errorf("parsed: %+v", c)
				}
			}, ""},
		{"workload defaults", nil, func(t *testing.T, c bench.Config, o options) {
			if c.Workload != bench.WorkloadKV || c.ListLimit != 1000 || c.PreloadBatch != 1 {
				t.Errorf("parsed: %+v", c)
			}
		}, ""},
		{"watch", []string{"-workload", "watch", "-watchers", "300", "-c", "8", "-d", "4s", "-prefix", "w/", "-target-kind", "etcd",
			"-max-writes", "5000", "-drain", "7s", "-settle", "9s", "-pids", "11, 12,,13", "-targets", "http://a:1,http://b:2", "-rate", "20.5"},
			func(t *testing.T, c bench.Config, o options) {
				w := o.watch
				if w == nil || w.Watchers != 300 || w.Writers != 8 || w.Duration != 4*time.Second || w.Prefix != "w/" ||
					w.Kind != bench.KindEtcd || w.MaxWrites != 5000 || w.Rate != 20.5 || w.Drain != 7*time.Second || w.Settle != 9*time.Second ||
					fmt.Sprint(w.Pids) != "[11 12 13]" || strings.Join(w.Targets, " ") != "http://a:1 http://b:2" || w.Progress == nil {
					t.Errorf("parsed: %+v", w)
				}
			}, ""},
		{"watch defaults", []string{"-workload", "watch"}, func(t *testing.T, c bench.Config, o options) {
			if w := o.watch; w == nil || w.Watchers != 1000 || w.Writers != 16 || len(w.Pids) != 0 || w.Drain != time.Minute || w.Rate != 0 {
				t.Errorf("parsed: %+v", w)
			}
		}, ""},
		{"kv has no watch", nil, func(t *testing.T, c bench.Config, o options) {
			if o.watch != nil {
				t.Errorf("watch config for the kv workload: %+v", o.watch)
			}
		}, ""},
		{"watch: bad pid", []string{"-workload", "watch", "-pids", "12,x"}, nil, `"x" is not a process id`},
		{"watch: no watchers", []string{"-workload", "watch", "-watchers", "0"}, nil, "watchers 0"},
		{"watch: negative rate", []string{"-workload", "watch", "-rate", "-5"}, nil, "rate -5"},
		{"rate without watch", []string{"-rate", "20"}, nil, "only -workload watch is paced"},
		{"bad workload", []string{"-workload", "scan"}, nil, "workload"},
		{"preload batch over 128", []string{"-preload-batch", "200"}, nil, "preload batch"},
		{"bad ratio", []string{"-ratio", "2"}, nil, "ratio"},
		{"bad kind", []string{"-target-kind", "consul"}, nil, "target kind"},
		{"stray argument", []string{"extra"}, nil, "unexpected"},
		{"unknown flag", []string{"-q"}, nil, "not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, opt, err := parseFlags(tc.args, io.Discard)
			if tc.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errHas) {
					t.Fatalf("err %v, want %q", err, tc.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg, opt)
		})
	}
}

// The exit status says whether more than 1% of requests failed.
func TestRunExitStatus(t *testing.T) {
	var n atomic.Int64
	var failEvery atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if k, f := n.Add(1), failEvery.Load(); f > 0 && k%f == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, `{"key":"k","index":1}`)
	}))
	defer srv.Close()
	args := []string{"-targets", srv.URL, "-n", "200", "-c", "4", "-warmup", "0", "-progress=false", "-json"}

	var out, errOut bytes.Buffer
	if code := run(args, &out, &errOut); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, errOut.String())
	}
	var res bench.Result
	if err := json.Unmarshal(out.Bytes(), &res); err != nil || res.Requests != 200 || res.OK != 200 {
		t.Fatalf("json %q: %v", out.String(), err)
	}

	failEvery.Store(10) // 10% 503s
	out.Reset()
	errOut.Reset()
	if code := run(args[:len(args)-1], &out, &errOut); code != 1 {
		t.Fatalf("exit %d with 10%% failures, want 1", code)
	}
	if !strings.Contains(errOut.String(), "20 of 200 requests failed") || !strings.Contains(out.String(), "HTTP 503 ×20") {
		t.Errorf("stdout %s\nstderr %s", out.String(), errOut.String())
	}

	if code := run([]string{"-c", "0"}, io.Discard, io.Discard); code != 2 {
		t.Errorf("bad flags: exit %d, want 2", code)
	}
	if code := run([]string{"-h"}, io.Discard, io.Discard); code != 0 {
		t.Errorf("-h: exit %d, want 0", code)
	}
}
