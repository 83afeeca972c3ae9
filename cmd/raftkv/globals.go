package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/client"
)

// Environment variables of the client commands; a flag set on the
// command line wins over its variable.
const (
	envEndpoints = "RAFTKV_ENDPOINTS"
	envToken     = "RAFTKV_TOKEN"
	envCACert    = "RAFTKV_CACERT"
	envCert      = "RAFTKV_CERT"
	envKey       = "RAFTKV_KEY"
)

const (
	// defaultTimeout bounds one command's requests, retries and failover
	// included (--timeout): long enough to ride out an election (about
	// 2 s) and a few retries, short enough that a script against a dead
	// cluster fails in seconds rather than hanging.
	defaultTimeout = 15 * time.Second
	defaultPort    = "8000"
	outputTable    = "table"
	outputJSON     = "json"
)

// globals are the flags every client command takes (persistent on the
// root, so `raftkv --endpoints X get k` and `raftkv get k --endpoints X`
// both work).
type globals struct {
	endpoints []string
	token     string
	cacert    string
	cert      string
	key       string
	timeout   time.Duration
	output    string
}

// clientFlags names the flags that configure the connection to a cluster.
var clientFlags = []string{"endpoints", "token", "cacert", "cert", "key", "timeout", "output"}

func (g *globals) register(root *cobra.Command) {
	f := root.PersistentFlags()
	f.StringSliceVar(&g.endpoints, "endpoints", nil, "comma-separated node addresses (host:port or URL); env "+envEndpoints+"\n(default http://127.0.0.1:$HTTP_SERVER_PORT, the local node; port 8000 when unset)")
	f.StringVar(&g.token, "token", "", "bearer token; env "+envToken)
	f.StringVar(&g.cacert, "cacert", "", "CA certificate (PEM) to verify the nodes' HTTPS certificates; env "+envCACert)
	f.StringVar(&g.cert, "cert", "", "client certificate (PEM) for nodes that require one; env "+envCert)
	f.StringVar(&g.key, "key", "", "the client certificate's private key (PEM); env "+envKey)
	f.DurationVar(&g.timeout, "timeout", defaultTimeout, "bound on the command's requests, retries and failover included (0: none)")
	f.StringVarP(&g.output, "output", "o", outputTable, "output format: table (for people) or json (for scripts; docs/cli.md)")
	for _, name := range []string{"cacert", "cert", "key"} {
		_ = root.MarkPersistentFlagFilename(name, "pem", "crt", "key")
	}
	_ = root.RegisterFlagCompletionFunc("output", cobra.FixedCompletions([]cobra.Completion{outputTable, outputJSON}, cobra.ShellCompDirectiveNoFileComp))
}

// validate checks the global flags once parsed (a usage error if bad).
func (g *globals) validate(*cobra.Command) error {
	switch g.output {
	case outputTable, outputJSON:
	default:
		return usageError("--output %q: want table or json", g.output)
	}
	if g.timeout < 0 {
		return usageError("--timeout %v: want a positive duration, or 0 for none", g.timeout)
	}
	return nil
}

// changedClientFlags names the client flags set on cmd's command line
// ("" when none).
func (g *globals) changedClientFlags(cmd *cobra.Command) string {
	var names []string
	for _, name := range clientFlags {
		if f := cmd.Flags().Lookup(name); f != nil && f.Changed {
			names = append(names, "--"+name)
		}
	}
	return strings.Join(names, ", ")
}

// json reports whether -o json was asked for.
func (g *globals) json() bool { return g.output == outputJSON }

// resolved is the effective value of a string flag: the flag when set on
// the command line, else its environment variable.
func (a *app) resolved(cmd *cobra.Command, flag, envName string, value string) string {
	if f := cmd.Flags().Lookup(flag); f != nil && f.Changed {
		return value
	}
	if v, ok := a.lookup(envName); ok {
		return v
	}
	return value
}

// endpointList is --endpoints, else RAFTKV_ENDPOINTS, else the local
// node: http://127.0.0.1:$HTTP_SERVER_PORT (8000 when unset), the address
// `raftkv` with no configuration serves.
func (a *app) endpointList(cmd *cobra.Command) ([]string, error) {
	var list []string
	if f := cmd.Flags().Lookup("endpoints"); f != nil && f.Changed {
		list = a.g.endpoints
	} else if v, ok := a.lookup(envEndpoints); ok {
		list = strings.Split(v, ",")
	} else {
		port := defaultPort
		if v, ok := a.lookup("HTTP_SERVER_PORT"); ok && v != "" {
			port = v
		}
		return []string{"http://" + net.JoinHostPort("127.0.0.1", port)}, nil
	}
	var out []string
	for _, e := range list {
		if e = strings.TrimSpace(e); e != "" {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil, usageError("no endpoints: --endpoints or %s is empty", envEndpoints)
	}
	return out, nil
}

// client builds the client of cmd's global flags and environment. A bad
// endpoint or certificate file is a usage error.
func (a *app) client(cmd *cobra.Command) (*client.Client, error) {
	endpoints, err := a.endpointList(cmd)
	if err != nil {
		return nil, err
	}
	var opts []client.Option
	if tok := a.resolved(cmd, "token", envToken, a.g.token); tok != "" {
		opts = append(opts, client.WithToken(tok))
	}
	ca := a.resolved(cmd, "cacert", envCACert, a.g.cacert)
	cert := a.resolved(cmd, "cert", envCert, a.g.cert)
	key := a.resolved(cmd, "key", envKey, a.g.key)
	if (cert == "") != (key == "") {
		return nil, usageError("--cert and --key (%s, %s) go together", envCert, envKey)
	}
	if ca != "" || cert != "" {
		opts = append(opts, client.WithTLSFiles(ca, cert, key))
	}
	c, err := client.New(endpoints, opts...)
	if err != nil {
		return nil, &exitErr{code: exitUsage, err: err}
	}
	return c, nil
}

// context is the context of one command's requests: bounded by --timeout
// (0: unbounded) and ended by the command's own context (SIGINT, SIGTERM).
func (a *app) context(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	if a.g.timeout > 0 {
		return context.WithTimeout(ctx, a.g.timeout)
	}
	return context.WithCancel(ctx)
}

// codeOf is the exit code of a command's error: 3 not found, 4 compare
// failed, 5 lock held, 1 anything else.
func codeOf(err error) int {
	switch {
	case errors.Is(err, client.ErrNotFound):
		return exitNotFound
	case errors.Is(err, client.ErrCompareFailed):
		return exitCompareFailed
	case errors.Is(err, client.ErrLockHeld):
		return exitLockHeld
	}
	return exitError
}

// describe is the one line printed for a command's error: the server's
// message and code, and the node that answered.
func describe(err error) string {
	msg := err.Error()
	var ce *client.Error
	if errors.As(err, &ce) && ce.Message != "" {
		var b strings.Builder
		b.WriteString(ce.Message)
		b.WriteString(" (")
		if ce.Status != 0 {
			fmt.Fprintf(&b, "%d ", ce.Status)
		}
		b.WriteString(ce.Code)
		if ce.Endpoint != "" {
			b.WriteString(" from " + ce.Endpoint)
		}
		b.WriteString(")")
		// Keep what a wrapper said ("granting the lease: …").
		msg = strings.Replace(msg, ce.Error(), b.String(), 1)
	}
	for _, p := range []string{"raftkv client: ", "raftkv: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		msg += " (--timeout ran out)"
	}
	return msg
}

// isSet reports whether the flag name was given on cmd's command line.
func isSet(cmd *cobra.Command, name string) bool {
	f := cmd.Flags().Lookup(name)
	return f != nil && f.Changed
}

// withClient runs f with the client of cmd's flags and a context bounded
// by --timeout, and closes the client after.
func (a *app) withClient(cmd *cobra.Command, f func(c *client.Client, ctx context.Context) error) error {
	return a.withClientIn(cmd, a.context, f)
}

// withClientIn is withClient with the context newCtx makes for cmd:
// a.context (bounded by --timeout), a.transferContext (backup, restore)
// or signalContext (watch, lease keepalive: until SIGINT or SIGTERM). A
// bad flag or environment is a usage error before newCtx is called.
func (a *app) withClientIn(cmd *cobra.Command, newCtx func(*cobra.Command) (context.Context, context.CancelFunc), f func(c *client.Client, ctx context.Context) error) error {
	c, err := a.client(cmd)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := newCtx(cmd)
	defer cancel()
	return f(c, ctx)
}
