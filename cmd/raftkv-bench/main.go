// Command raftkv-bench is a closed-loop HTTP load generator for raftkv and,
// with -target-kind etcd, for etcd's v3 JSON gateway, so both are measured
// by the same tool. See internal/bench.
//
//	raftkv-bench -targets http://127.0.0.1:8000,http://127.0.0.1:8001 -c 64 -d 10s -ratio 1
//	raftkv-bench -ratio 0 -consistency stale -preload -json
//	raftkv-bench -target-kind etcd -targets http://127.0.0.1:2379 -c 16 -ratio 1
//	raftkv-bench -keys 100000 -preload -preload-batch 100 -workload list -limit 1000 -c 16
//	raftkv-bench -keys 100000 -workload txn -c 64
//	raftkv-bench -workload watch -watchers 1000 -c 16 -d 10s -pids 4242,4243,4244
//	raftkv-bench -workload watch -watchers 1000 -c 16 -d 10s -rate 20
//
// Exit status: 0 on success; 1 if more than 1% of requests failed (or none
// completed); 2 for bad flags or a failed preload; 130 when interrupted
// (after printing what was measured).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/raftkv/raftkv/internal/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// options are the flags that are not part of bench.Config.
type options struct {
	json     bool
	progress bool
	// watch is set for -workload watch, which bench.RunWatch runs instead
	// of bench.Run.
	watch *bench.WatchConfig
}

func parseFlags(args []string, stderr io.Writer) (bench.Config, options, error) {
	cfg := bench.DefaultConfig()
	var opt options
	fs := flag.NewFlagSet("raftkv-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := fs.String("targets", strings.Join(cfg.Targets, ","), "comma-separated base URLs; each worker sends to them in turn")
	kind := fs.String("target-kind", string(cfg.Kind), "raftkv, or etcd (v3 JSON gateway: POST /v3/kv/put, /v3/kv/range)")
	fs.IntVar(&cfg.Concurrency, "c", cfg.Concurrency, "concurrent workers, one request in flight each")
	fs.DurationVar(&cfg.Duration, "d", cfg.Duration, "measured duration (ignored when -n is set)")
	fs.Int64Var(&cfg.Requests, "n", 0, "total measured requests; wins over -d when set")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "key space: keys are chosen uniformly from this many")
	fs.IntVar(&cfg.ValueSize, "value-size", cfg.ValueSize, "bytes per written value")
	fs.Float64Var(&cfg.Ratio, "ratio", cfg.Ratio, "fraction of writes, 0..1 (1 = writes only, 0 = reads only, 0.1 = 10% writes)")
	fs.StringVar(&cfg.Consistency, "consistency", cfg.Consistency, "reads: linearizable, leader or stale (etcd: stale = serializable, otherwise linearizable)")
	fs.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "key prefix")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "run this long before measuring (not counted)")
	fs.BoolVar(&opt.json, "json", false, "print the result as one JSON object")
	fs.BoolVar(&opt.progress, "progress", true, "print a progress line every second to stderr")
	fs.BoolVar(&cfg.Preload, "preload", false, "write every key once before measuring, so reads find them")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "per-request timeout")
	fs.Uint64Var(&cfg.Seed, "seed", cfg.Seed, "random seed; worker w draws from (seed, w)")
	fs.StringVar(&cfg.Workload, "workload", cfg.Workload, "kv (puts and gets by -ratio), list (the first -limit keys under -prefix), "+
		"count (keys under -prefix), txn (compare + 2 puts), or watch (-watchers streams on -prefix while -c writers put "+
		"for -d: delivered events/s, put-acknowledged-to-event latency, memory per idle watcher); list and count are reads, txn writes")
	fs.IntVar(&cfg.ListLimit, "limit", cfg.ListLimit, "list: keys per request")
	fs.IntVar(&cfg.PreloadBatch, "preload-batch", cfg.PreloadBatch, fmt.Sprintf("-preload: keys per request; > 1 writes them in transactions (raftkv /txn, etcd /v3/kv/txn), at most %d", bench.MaxPreloadBatch))
	wd := bench.DefaultWatchConfig()
	watchers := fs.Int("watchers", wd.Watchers, "watch: streams on -prefix, round-robin over -targets")
	maxWrites := fs.Int64("max-writes", wd.MaxWrites, "watch: bound on the puts of the run")
	drain := fs.Duration("drain", wd.Drain, "watch: how long the watchers may take, after the last put, to receive every event")
	settle := fs.Duration("settle", wd.Settle, "watch: bound on each wait for the servers' memory to settle")
	rate := fs.Float64("rate", 0, "watch: offered puts per second over all -c writers, spread evenly over -d (0: each writer puts as fast as answers come)")
	pids := fs.String("pids", "", "watch: comma-separated server process ids whose VmRSS gives the memory per idle watcher")
	if err := fs.Parse(args); err != nil {
		return cfg, opt, err
	}
	if fs.NArg() > 0 {
		return cfg, opt, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	cfg.Targets = nil
	for _, t := range strings.Split(*targets, ",") {
		if t = strings.TrimSpace(t); t != "" {
			cfg.Targets = append(cfg.Targets, t)
		}
	}
	cfg.Kind = bench.Kind(*kind)
	if opt.progress {
		cfg.Progress = stderr
	}
	if cfg.Workload != "watch" && *rate != 0 {
		return cfg, opt, fmt.Errorf("-rate %v: only -workload watch is paced", *rate)
	}
	if cfg.Workload == "watch" {
		w := wd
		w.Targets, w.Kind, w.Writers, w.Duration, w.Keys, w.ValueSize = cfg.Targets, cfg.Kind, cfg.Concurrency, cfg.Duration, cfg.Keys, cfg.ValueSize
		w.Prefix, w.Timeout, w.Seed, w.Progress = cfg.Prefix, cfg.Timeout, cfg.Seed, cfg.Progress
		w.Watchers, w.MaxWrites, w.Drain, w.Settle, w.Rate = *watchers, *maxWrites, *drain, *settle, *rate
		for _, p := range strings.Split(*pids, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			n, err := strconv.Atoi(p)
			if err != nil {
				return cfg, opt, fmt.Errorf("-pids: %q is not a process id", p)
			}
			w.Pids = append(w.Pids, n)
		}
		if _, err := w.Validate(); err != nil {
			return cfg, opt, err
		}
		opt.watch = &w
		return cfg, opt, nil
	}
	if _, err := cfg.Validate(); err != nil {
		return cfg, opt, err
	}
	return cfg, opt, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, opt, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv-bench: %v\n", err)
		return 2
	}
	if cfg.Kind == bench.KindEtcd && cfg.Consistency == bench.Leader {
		fmt.Fprintln(stderr, "raftkv-bench: note: etcd has no leader-local reads; -consistency leader reads linearizably")
	}

	// The first Ctrl-C stops the run and prints what it measured; stop()
	// then restores the default, so a second one kills at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }()

	if opt.watch != nil {
		res, err := bench.RunWatch(ctx, *opt.watch)
		if err != nil {
			return notRun(ctx, err, stderr)
		}
		return report(res, res.Interrupted, res.Failed, res.Failure, opt.json, stdout, stderr)
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return notRun(ctx, err, stderr)
	}
	return report(res, res.Interrupted, res.Failed, res.Failure, opt.json, stdout, stderr)
}

// notRun reports err, why a run did not start or finish, and is the
// exit status: 130 when interrupted, else 2.
func notRun(ctx context.Context, err error, stderr io.Writer) int {
	fmt.Fprintf(stderr, "raftkv-bench: %v\n", err)
	if ctx.Err() != nil {
		return 130
	}
	return 2
}

// result is a run's outcome as it prints itself (*bench.Result,
// *bench.WatchResult).
type result interface {
	WriteJSON(io.Writer) error
	WriteText(io.Writer) error
}

// report prints res (as JSON with asJSON) and is the exit status: 1 when
// it could not be printed or the run failed, 130 when it was
// interrupted, else 0.
func report(res result, interrupted, failed bool, failure string, asJSON bool, stdout, stderr io.Writer) int {
	var err error
	if asJSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "raftkv-bench: %v\n", err)
		return 1
	}
	switch {
	case interrupted:
		fmt.Fprintln(stderr, "raftkv-bench: interrupted")
		return 130
	case failed:
		fmt.Fprintf(stderr, "raftkv-bench: run failed: %s\n", failure)
		return 1
	}
	return 0
}
