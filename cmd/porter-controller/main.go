// Command porter-controller gives pool addresses to Services and enforces
// the lockout guard, run as a Deployment.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/porterlb/porter/controller"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := controller.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
