// Command porter-controller gives pool addresses to Services and enforces
// the lockout guard, run as a Deployment.
package main

import (
	"github.com/porterlb/porter/controller"
	"github.com/porterlb/porter/pkg/daemon"
)

func main() { daemon.Main(controller.NewCommand) }
