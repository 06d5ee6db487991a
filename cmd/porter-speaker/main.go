// Command porter-speaker is Porter's data path, run as a DaemonSet.
package main

import (
	"github.com/porterlb/porter/pkg/daemon"
	"github.com/porterlb/porter/speaker"
)

func main() { daemon.Main(speaker.NewCommand) }
