package config

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// parser reads typed, range-checked values and keeps the first error, so
// Load reads as a flat list of fields. Each error names its variable.
type parser struct {
	lookup func(string) (string, bool)
	err    error
}

func (p *parser) get(name string) (string, bool) {
	v, ok := p.lookup(name)
	v = strings.TrimSpace(v)
	return v, ok && v != ""
}

func (p *parser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
}

func (p *parser) str(name, def string) string {
	if v, ok := p.get(name); ok {
		return v
	}
	return def
}

func (p *parser) intRange(name string, def, lo, hi int) int {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, "%q is not a whole number in %d..%d", v, lo, hi)
		return def
	}
	return n
}

func (p *parser) port(name string, def int) int {
	return p.intRange(name, def, 1, 65535)
}

func (p *parser) duration(name string, def, min time.Duration) time.Duration {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < min {
		p.fail(name, "%q is not a duration of at least %s (e.g. 30s, 500ms)", v, min)
		return def
	}
	return d
}

// durationRange is duration with an upper bound too.
func (p *parser) durationRange(name string, def, min, max time.Duration) time.Duration {
	d := p.duration(name, def, min)
	if d > max {
		p.fail(name, "%s is more than %s", d, max)
		return def
	}
	return d
}

func (p *parser) boolean(name string, def bool) bool {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		p.fail(name, "%q is not true or false", v)
		return def
	}
	return b
}

func (p *parser) oneOf(name, def string, allowed ...string) string {
	v, ok := p.get(name)
	if !ok {
		return def
	}
	for _, a := range allowed {
		if strings.EqualFold(v, a) {
			return a
		}
	}
	p.fail(name, "%q is not one of %s", v, strings.Join(allowed, ", "))
	return def
}

func (p *parser) list(name string) []string {
	v, ok := p.get(name)
	if !ok {
		return nil
	}
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// defaultAdvertise is the bind address, except that a wildcard bind (as in
// a container) advertises the host name, which peers can resolve.
func defaultAdvertise(bind string) string {
	if ip, err := netip.ParseAddr(bind); err == nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil && h != "" {
			return h
		}
	}
	return bind
}

func isIPv6(s string) bool {
	ip, err := netip.ParseAddr(s)
	return err == nil && ip.Is6()
}
