package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes of every command but `serve` (whose codes are those of the
// node, docs/operations.md) and `lock` (which exits with its command's
// code once it ran it). docs/cli.md documents them; they are part of the
// interface scripts rely on, so never renumber one.
const (
	exitOK    = 0
	exitError = 1 // the request failed: the server's error, a network failure, a bad file
	exitUsage = 2 // bad flags or arguments (the shell convention; Go's flag package uses it too)
	// exitNotFound: a key, lease or member that does not exist (404), so
	// `raftkv get KEY` can test for a key. 3 is the first code that is
	// neither a general failure (1) nor a usage error (2).
	exitNotFound = 3
	// exitCompareFailed: a compare-and-set that did not match (409
	// cas_failed), or a transaction whose compares failed (its failure
	// branch ran).
	exitCompareFailed = 4
	// exitLockHeld: `lock` could not take the lock within --wait (409
	// lock_held); its command did not run.
	exitLockHeld = 5
)

// exitErr carries the exit code of a failed command. Errors from a
// command's RunE are always one (see runE); an error without one comes
// from cobra itself (an unknown command, a flag it could not parse) and is
// a usage error.
type exitErr struct {
	code  int
	err   error // nil: print nothing (the command reported it already)
	usage bool  // print the command's usage line after err
}

func (e *exitErr) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e *exitErr) Unwrap() error { return e.err }

// usageError makes a usage error (exit 2) of a formatted message.
func usageError(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...), usage: true}
}

// exitCode is a quiet exit with code.
func exitCode(code int) error {
	if code == exitOK {
		return nil
	}
	return &exitErr{code: code}
}

// runE adapts a command's body so that every error it returns carries an
// exit code: a client error gets the one its kind maps to (codeOf), any
// other error 1.
func runE(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd, args)
		if err == nil {
			return nil
		}
		var ee *exitErr
		if errors.As(err, &ee) {
			return err
		}
		return &exitErr{code: codeOf(err), err: err}
	}
}

// env looks up an environment variable (os.LookupEnv outside tests).
type env func(string) (string, bool)

// app is one run of the binary: its standard streams, environment and
// the values of the global flags once parsed.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	lookup         env
	g              globals
	// node runs the node (serve); tests replace it.
	node func() error
}

// run executes the command line args (without the program name) and
// returns the process's exit code. With no arguments it runs the node.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, lookup env) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr, lookup: lookup}
	a.node = a.serve
	return a.execute(args)
}

// execute runs args on a and returns the exit code.
func (a *app) execute(args []string) int {
	stderr := a.stderr
	root := a.rootCommand()
	root.SetArgs(legacyArgs(args))
	cmd, err := root.ExecuteC()
	if err == nil {
		return exitOK
	}
	var ee *exitErr
	if !errors.As(err, &ee) {
		// Only cobra's own errors come here: all usage errors.
		ee = &exitErr{code: exitUsage, err: err, usage: true}
	}
	if ee.err != nil {
		fmt.Fprintf(stderr, "%s: %s\n", cmd.CommandPath(), describe(ee.err))
	}
	if ee.usage && cmd.Annotations[annotationOwnUsage] == "" {
		// The usage line, and where the rest is: a mistake should not
		// bury its one line of error under a page of help.
		fmt.Fprintf(stderr, "usage: %s\nRun '%s --help' for more.\n", cmd.UseLine(), cmd.CommandPath())
	}
	return ee.code
}

// legacyArgs maps the single-dash forms the binary took before its
// commands moved to cobra (`raftkv -help`, `raftkv -version`) onto theirs.
func legacyArgs(args []string) []string {
	if len(args) == 1 {
		switch args[0] {
		case "-help":
			return []string{"--help"}
		case "-version":
			return []string{"--version"}
		}
	}
	return args
}

const (
	// annotationOwnUsage marks a command that parses its own arguments
	// and prints its own usage on a mistake (healthcheck).
	annotationOwnUsage = "raftkv/own-usage"
	// annotationClient marks a command that talks to a cluster through
	// the client package: its help lists the global flags.
	annotationClient = "raftkv/client"
)

// Command groups of the root's help.
const (
	groupNode    = "node"
	groupKV      = "kv"
	groupCoord   = "coord"
	groupCluster = "cluster"
)

func (a *app) rootCommand() *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   "raftkv [command]",
		Short: "a replicated key-value store: the node and its command-line client",
		Long:  rootLong,
		// The node is what `raftkv` with no arguments runs (the start
		// scripts, the image and the systemd unit rely on it).
		RunE: runE(func(cmd *cobra.Command, args []string) error {
			if showVersion {
				if cmd.Flags().NFlag() > 1 {
					return usageError("--version takes no other flags")
				}
				fmt.Fprintln(a.stdout, versionLine())
				return nil
			}
			if cmd.Flags().NFlag() > 0 {
				return usageError("flags need a command: %s (`raftkv serve` runs the node, configured by environment variables)", setFlags(cmd))
			}
			return a.node()
		}),
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	root.SetIn(a.stdin)
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.SetUsageTemplate(usageTemplate)
	root.SetHelpTemplate(helpTemplate)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &exitErr{code: exitUsage, err: err, usage: true} })
	root.Flags().BoolVar(&showVersion, "version", false, "print the version and exit")
	a.g.register(root)
	root.PersistentPreRunE = func(cmd *cobra.Command, _ []string) error { return a.g.validate(cmd) }

	root.AddGroup(
		&cobra.Group{ID: groupNode, Title: "Node commands (configured by environment variables, like the node):"},
		&cobra.Group{ID: groupKV, Title: "Keys (through the API, on --endpoints):"},
		&cobra.Group{ID: groupCoord, Title: "Leases and locks:"},
		&cobra.Group{ID: groupCluster, Title: "Cluster:"},
	)
	root.AddCommand(
		a.serveCommand(), a.restoreCommand(), a.healthcheckCommand(),
		a.getCommand(), a.putCommand(), a.delCommand(), a.lsCommand(), a.watchCommand(), a.txnCommand(),
		a.leaseCommand(), a.lockCommand(),
		a.membersCommand(), a.statusCommand(), a.backupCommand(),
		a.versionCommand(),
	)
	root.SetHelpCommand(a.helpCommand(root))
	return root
}

// setFlags names the flags set on cmd's command line.
func setFlags(cmd *cobra.Command) string {
	var names []string
	cmd.Flags().Visit(func(f *pflag.Flag) { names = append(names, "--"+f.Name) })
	return strings.Join(names, ", ")
}

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version and the commit it was built from (also --version)",
		Args:  noArgs,
		RunE: runE(func(*cobra.Command, []string) error {
			fmt.Fprintln(a.stdout, versionLine())
			return nil
		}),
	}
}

// helpCommand replaces cobra's, which answers an unknown topic with the
// root's help and status 0: here that is a usage error, as every mistake.
func (a *app) helpCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:   "help [command]",
		Short: "print the help of raftkv or of a command (also -h, --help)",
		RunE: runE(func(_ *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usageError("no help topic %q", strings.Join(args, " "))
			}
			return target.Help()
		}),
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			var names []cobra.Completion
			for _, sub := range root.Commands() {
				if sub.IsAvailableCommand() && strings.HasPrefix(sub.Name(), toComplete) {
					names = append(names, cobra.CompletionWithDesc(sub.Name(), sub.Short))
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
	}
}

// noArgs is cobra.NoArgs as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		if cmd.HasAvailableSubCommands() {
			return usageError("unknown command %q", args[0])
		}
		return usageError("%s takes no arguments", cmd.Name())
	}
	return nil
}

// exactArgs is cobra.ExactArgs(n) as a usage error naming the arguments.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError("%s takes %d argument(s): %s (got %d)", cmd.Name(), len(names), strings.Join(names, " "), len(args))
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs as a usage error.
func rangeArgs(min, max int, names string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || len(args) > max {
			return usageError("%s takes %s (got %d arguments)", cmd.Name(), names, len(args))
		}
		return nil
	}
}

// stdinOr opens name for reading; "-" (or "") is standard input.
func (a *app) stdinOr(name string) (io.ReadCloser, error) {
	if name == "" || name == "-" {
		return io.NopCloser(a.stdin), nil
	}
	return os.Open(name)
}

const rootLong = `With no command, runs one node of a replicated key-value store, configured by
environment variables; with none set it serves a one-node store on
127.0.0.1:8000 and keeps its data in ./data/n1. The other commands are the
command-line client of a running cluster (docs/cli.md).`

// rootEnvHelp ends the root's help: the variables a first start needs;
// docs/configuration.md has all of them.
const rootEnvHelp = `
Main variables of the node (all of them: docs/configuration.md):
  RAFT_NODE_ID           this node's id (default n1)
  HTTP_SERVER_PORT       HTTP API port (default 8000)
  RAFT_SERVER_PORT       Raft transport port (default 9000)
  RAFT_VOLUME_DIR        data directory (default ./data/$RAFT_NODE_ID)
  BIND_ADDR              IP both listeners bind to (default 127.0.0.1)
  ADVERTISE_ADDR         host other nodes and clients use (default BIND_ADDR)
  RAFT_BOOTSTRAP         form a one-node cluster on an empty volume (default
                         true unless RAFT_JOIN or RAFT_BOOTSTRAP_EXPECT is set)
  RAFT_JOIN              HTTP addresses of members to join (host:port or URL)
  RAFT_BOOTSTRAP_EXPECT  form a cluster once this many nodes see each other
  SHUTDOWN_TIMEOUT       bound on a graceful stop (default 10s)
  AUTH_TOKENS_FILE       bearer tokens; set: requests need a token
  TLS_CERT_FILE, TLS_KEY_FILE, TLS_CA_FILE   HTTPS for the API
  LOG_LEVEL, LOG_FORMAT  info/debug/..., text or json

Client environment (flags win): RAFTKV_ENDPOINTS, RAFTKV_TOKEN, RAFTKV_CACERT,
RAFTKV_CERT, RAFTKV_KEY. Exit codes: 0 ok, 1 error, 2 usage, 3 not found,
4 compare failed, 5 lock held (docs/cli.md).
`

// usageTemplate is cobra's, with a lower-case "usage:" line first (what
// the binary printed before cobra, and what scripts and tests grep for),
// and the global flags shown only for the commands that use them.
const usageTemplate = `usage: {{.UseLine}}{{if .HasAvailableSubCommands}}{{$cmds := .Commands}}{{if eq (len .Groups) 0}}

Commands:{{range $cmds}}{{if (or .IsAvailableCommand (eq .Name "help"))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{else}}{{range $group := .Groups}}

{{.Title}}{{range $cmds}}{{if (and (eq .GroupID $group.ID) (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{if not .AllChildCommandsHaveGroup}}

Other commands:{{range $cmds}}{{if (and (eq .GroupID "") (or .IsAvailableCommand (eq .Name "help")))}}
  {{rpad .Name .NamePadding }} {{.Short}}{{end}}{{end}}{{end}}{{end}}{{end}}{{if .HasExample}}

Examples:
{{.Example}}{{end}}{{if .HasAvailableLocalFlags}}

Flags:
{{.LocalFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if and .HasAvailableInheritedFlags (index .Annotations "raftkv/client")}}

Global flags:
{{.InheritedFlags.FlagUsages | trimTrailingWhitespaces}}{{end}}{{if .HasAvailableSubCommands}}

Use "{{.CommandPath}} [command] --help" for more about a command.{{end}}
`

// helpTemplate: the usage line, the description, then the rest of the
// usage; the root adds the node's main variables.
const helpTemplate = `{{with (or .Long .Short)}}{{. | trimTrailingWhitespaces}}

{{end}}{{.UsageString}}{{if not .HasParent}}` + "{{rootEnvHelp}}{{end}}"

func init() {
	cobra.AddTemplateFunc("rootEnvHelp", func() string { return rootEnvHelp })
}
