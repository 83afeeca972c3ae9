package main

import (
	"bytes"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/raftkv/raftkv/internal/config"
	"github.com/raftkv/raftkv/internal/tlsconfig"
)

// The healthcheck subcommand exists because the container image (distroless)
// has no shell and no curl: Docker's HEALTHCHECK runs the binary itself.
//
// Exit codes follow Docker's HEALTHCHECK contract: 0 healthy (the URL
// answered 200), 1 unhealthy (anything else, with the reason on stderr).
// 2 is a usage or configuration error (Docker reserves 2, but treats any
// non-zero code as a failed check, and a fixed CMD never hits it).
const (
	healthOK    = 0
	healthBad   = 1
	healthUsage = 2

	defaultHealthTimeout = 3 * time.Second
	// healthBodyLimit bounds what is read from the answer and echoed.
	healthBodyLimit = 4 << 10
)

const healthUsageText = `usage: raftkv healthcheck [-timeout 3s] [URL]

Exits 0 if URL answers 200, 1 otherwise (the reason is printed on stderr).
URL defaults to http://127.0.0.1:$HTTP_SERVER_PORT/ready (https when
TLS_CERT_FILE is set; the certificate is then checked against ADVERTISE_ADDR).
For an https URL, TLS_CA_FILE (if set) is the trusted CA and
TLS_CERT_FILE/TLS_KEY_FILE (if set) are presented as the client certificate.
`

func (a *app) healthcheckCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:     "healthcheck [-timeout 3s] [URL]",
		GroupID: groupNode,
		Short:   "exit 0 if the node answers /ready (the image's HEALTHCHECK)",
		// It keeps the flag syntax it had before cobra (-timeout, which
		// Dockerfiles and compose files use) and prints its own usage.
		DisableFlagParsing:    true,
		Annotations:           map[string]string{annotationOwnUsage: "yes"},
		DisableFlagsInUseLine: true,
		RunE: func(_ *cobra.Command, args []string) error {
			return exitCode(healthcheck(args, a.lookup, a.stdout, a.stderr))
		},
	}
	// `raftkv help healthcheck` prints what `raftkv healthcheck --help` does.
	cmd.SetHelpFunc(func(*cobra.Command, []string) { fmt.Fprint(a.stdout, healthUsageText) })
	return cmd
}

// healthcheck runs `raftkv healthcheck` with args (without the subcommand
// name) and the environment lookup, and returns the exit code.
func healthcheck(args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below: stdout for --help, stderr for a mistake
	timeout := fs.Duration("timeout", defaultHealthTimeout, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, healthUsageText)
			return healthOK
		}
		fmt.Fprint(stderr, healthUsageText)
		return healthUsage
	}
	if fs.NArg() > 1 || *timeout <= 0 {
		fmt.Fprint(stderr, healthUsageText)
		return healthUsage
	}
	// The check runs beside the node with the node's own environment:
	// the same defaults find its port, the same certificates reach it.
	cfg, err := config.Load(lookup)
	if err != nil {
		fmt.Fprintf(stderr, "raftkv healthcheck: configuration: %v\n", err)
		return healthUsage
	}
	target, serverName := fs.Arg(0), ""
	if target == "" {
		scheme := "http"
		if cfg.HTTPTLS() {
			// The node's certificate names the address peers use for
			// it, not loopback; verify against that name.
			scheme, serverName = "https", cfg.AdvertiseAddr
		}
		target = scheme + "://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.HTTPPort)) + "/ready"
	}
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "raftkv healthcheck: %q is not an http:// or https:// URL\n", target)
		return healthUsage
	}

	transport := &http.Transport{
		// A health check tests the target itself, never a proxy.
		Proxy:             nil,
		DisableKeepAlives: true,
	}
	if u.Scheme == "https" {
		// A node with TLS_CA_FILE requires a client certificate on every
		// connection: present the node's own, as its peers do.
		tc := &tls.Config{MinVersion: tlsconfig.MinVersion}
		if m := cfg.HTTPMaterial; m != nil { // read by config.Load
			tc = m.HTTPClient()
		}
		tc.ServerName = serverName
		transport.TLSClientConfig = tc
	}
	client := &http.Client{
		Transport: transport,
		Timeout:   *timeout,
		// A redirect is not a 200 from the target; report it as is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(u.String())
	if err != nil {
		fmt.Fprintf(stderr, "raftkv healthcheck: %v\n", err)
		return healthBad
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, healthBodyLimit))
	body = bytes.TrimSpace(body)
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "raftkv healthcheck: %s: %s: %s\n", u.Redacted(), resp.Status, body)
		return healthBad
	}
	fmt.Fprintf(stdout, "%s: %s\n", resp.Status, body)
	return healthOK
}
