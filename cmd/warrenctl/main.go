// Command warrenctl manages a Warren node with rabbitmqctl's verbs and
// flags: `warrenctl add_user prim 123456`, `warrenctl list_queues name
// messages`, `warrenctl set_policy xall "^" '{"ha-mode":"all"}'`.
package main

import (
	"os"

	"github.com/warrenmq/warren/internal/ctl"
)

func main() {
	os.Exit(ctl.Main(os.Args[1:], os.Stdout, os.Stderr))
}
