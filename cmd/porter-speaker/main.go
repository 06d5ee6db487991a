// Command porter-speaker is Porter's data path, run as a DaemonSet.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/porterlb/porter/speaker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := speaker.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
