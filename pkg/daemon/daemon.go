// Package daemon is what Porter's in-cluster programs, porter-speaker and
// porter-controller, share around their command line: how they start,
// stop on a signal, read the pod's environment and log.
package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"
)

// Main runs the command newCmd builds with the process's arguments until
// it returns or SIGINT or SIGTERM cancels it, and exits with its code.
//
// It first sets the Go runtime's soft memory limit from the container's
// (SoftLimit).
func Main(newCmd func(stdout, stderr io.Writer) *cobra.Command) {
	if l, ok := SoftLimit(os.Getenv); ok {
		debug.SetMemoryLimit(l)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Execute(ctx, newCmd(os.Stdout, os.Stderr), os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// Execute runs cmd with args and returns the process exit code.
func Execute(ctx context.Context, cmd *cobra.Command, args []string, stderr io.Writer) int {
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

// EnvOr is the environment variable name, which the pod spec sets from the
// downward API, or def outside a pod.
func EnvOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Logger logs text to w, debug detail included when verbose.
func Logger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}

// MemoryLimit is the Go runtime's soft memory limit in bytes, or 0 when
// there is none.
func MemoryLimit() int64 {
	if l := debug.SetMemoryLimit(-1); l != math.MaxInt64 {
		return l
	}
	return 0
}
