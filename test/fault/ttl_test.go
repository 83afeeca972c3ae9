package fault

// The TTL checker (S19): TTL keys written and refreshed through every
// node while the leader is SIGKILLed, read through every node all along.
// No key may be observed gone before its TTL since its last acknowledged
// refresh, nor observed alive past its TTL plus the documented bound
// since its last refresh attempt (fsm/DESIGN.md, "TTLs and leases").

import (
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/raftkv/raftkv/internal/testwait"
)

const (
	ttlKeyTTL = 3 * time.Second
	// ttlLateBound is fsm/DESIGN.md's bound after a failover (about 9 s),
	// with a second of slack for the harness.
	ttlLateBound = 10 * time.Second
)

// ttlKey is what the checker knows of one key: the send and answer times
// of its writes and refreshes.
type ttlKey struct {
	name string
	// lastAckedSend is the send time of the last refresh (or the write)
	// answered 200; lastAttemptEnd is when the last attempt of any outcome
	// ended (an unknown one may still have applied up to then).
	lastAckedSend, lastAttemptEnd time.Time
	acked                         bool
	goneSeen                      bool
}

type ttlChecker struct {
	r      *run
	http   *http.Client
	mu     sync.Mutex
	keys   map[string]*ttlKey
	order  []string
	issues []string
	stop   chan struct{}
	wg     sync.WaitGroup
	worst  time.Duration // latest expiry seen past the last acknowledged refresh + TTL
}

func (tc *ttlChecker) do(i int, method, path string) (int, time.Time, time.Time) {
	sent := time.Now()
	req, _ := http.NewRequest(method, tc.r.c.Nodes[i].URL(path), nil)
	resp, err := tc.http.Do(req)
	if err != nil {
		return 0, sent, time.Now()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp.StatusCode, sent, time.Now()
}

// write puts (or touches) key through node i and records the attempt.
func (tc *ttlChecker) write(i int, key string, touch bool) {
	method, path := http.MethodPut, fmt.Sprintf("/kv/%s?ttl=%s", key, ttlKeyTTL)
	if touch {
		method, path = http.MethodPost, "/kv/"+key+"?touch"
	}
	status, sent, end := tc.do(i, method, path)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	k := tc.keys[key]
	if k == nil {
		k = &ttlKey{name: key}
		tc.keys[key] = k
		tc.order = append(tc.order, key)
	}
	k.lastAttemptEnd = end
	if status == http.StatusOK {
		k.lastAckedSend, k.acked = sent, true
	}
}

// observe reads key through node i and checks the read against the
// key's record.
func (tc *ttlChecker) observe(i int, key string) {
	status, sent, end := tc.do(i, http.MethodGet, "/kv/"+key)
	tc.mu.Lock()
	defer tc.mu.Unlock()
	k := tc.keys[key]
	switch status {
	case http.StatusNotFound:
		if k.acked && end.Before(k.lastAckedSend.Add(ttlKeyTTL)) {
			tc.issues = append(tc.issues, fmt.Sprintf("TTL: %s seen gone on %s %v after its last acknowledged refresh was sent (TTL %v)",
				key, tc.r.c.Nodes[i].Name, end.Sub(k.lastAckedSend).Round(time.Millisecond), ttlKeyTTL))
		}
		if k.acked && !k.goneSeen {
			tc.worst = max(tc.worst, end.Sub(k.lastAckedSend.Add(ttlKeyTTL)))
		}
		k.goneSeen = true
	case http.StatusOK:
		if sent.After(k.lastAttemptEnd.Add(ttlKeyTTL + ttlLateBound)) {
			tc.issues = append(tc.issues, fmt.Sprintf("TTL: %s alive on %s %v after its last refresh attempt ended (TTL %v, bound %v)",
				key, tc.r.c.Nodes[i].Name, sent.Sub(k.lastAttemptEnd).Round(time.Millisecond), ttlKeyTTL, ttlLateBound))
		}
	}
}

// ttlAcrossLeaderKill is S19: keys with a TTL are written every 300 ms
// through the nodes in turn and left to expire, one key is kept alive by
// touches every 500 ms, every key is read through every node every
// 100 ms, and the leader is SIGKILLed and restarted in the middle.
func ttlAcrossLeaderKill(r *run) {
	tc := &ttlChecker{r: r, http: &http.Client{Timeout: requestTimeout + time.Second}, keys: map[string]*ttlKey{}, stop: make(chan struct{})}
	tc.write(0, "ttl/live", false)
	tc.wg.Add(2)
	go func() { // writer and refresher
		defer tc.wg.Done()
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-tc.stop:
				return
			case <-tick.C:
			}
			i := n % len(r.c.Nodes)
			if !r.c.Nodes[i].Running() {
				continue
			}
			if n%2 == 0 {
				tc.write(i, "ttl/live", true)
			}
			if n < 40 { // 12 s of keys, then only the live one
				tc.write(i, fmt.Sprintf("ttl/once/%03d", n), false)
			}
		}
	}()
	go func() { // reader
		defer tc.wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tc.stop:
				return
			case <-tick.C:
			}
			tc.mu.Lock()
			keys := append([]string(nil), tc.order...)
			tc.mu.Unlock()
			for i, n := range r.c.Nodes {
				if n.Running() {
					for _, k := range keys {
						tc.observe(i, k)
					}
				}
			}
		}
	}()
	stopped := false
	halt := func() {
		if !stopped {
			stopped = true
			close(tc.stop)
			tc.wg.Wait()
		}
	}
	defer halt()
	r.sleep(4 * time.Second)
	r.crash([]int{r.leader()}, 3*time.Second)
	// Every key written expires and is seen gone, within the bound.
	testwait.For(r.t, ttlKeyTTL+ttlLateBound+12*time.Second, "every TTL key seen gone", func() error {
		tc.mu.Lock()
		defer tc.mu.Unlock()
		left := 0
		for _, k := range tc.keys {
			if k.name != "ttl/live" && !k.goneSeen {
				left++
			}
		}
		if left > 0 {
			return fmt.Errorf("%d keys not seen gone yet", left)
		}
		return nil
	})
	halt()
	for i := range r.c.Nodes { // the live key goes too, so C2 counts only the workload's keys
		if status, _, _ := tc.do(i, http.MethodDelete, "/kv/ttl/live"); status == http.StatusOK || status == http.StatusNotFound {
			break
		}
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	for _, k := range tc.keys {
		if k.name != "ttl/live" && !k.goneSeen {
			tc.issues = append(tc.issues, fmt.Sprintf("TTL: %s never seen gone", k.name))
		}
	}
	r.res.notes = append(r.res.notes, fmt.Sprintf("TTL checker: %d keys, latest expiry %v after TTL from the acknowledged write", len(tc.keys), tc.worst.Round(time.Millisecond)))
	r.t.Logf("TTL checker: %d keys; latest first-seen expiry %v after the TTL (from the last acknowledged refresh's send)", len(tc.keys), tc.worst.Round(time.Millisecond))
	for _, p := range tc.issues {
		r.t.Error(p)
	}
}
