// Command gen writes internal/amqp/spec_gen.go (run by go generate).
//
//	go run ./internal/amqp/gen -out internal/amqp/spec_gen.go
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/warrenmq/warren/internal/amqp/specgen"
)

func main() {
	out := flag.String("out", "spec_gen.go", "output file")
	in := flag.String("spec", "", "spec XML (default: from the amqp091-go module)")
	flag.Parse()
	if err := run(*in, *out); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(in, out string) error {
	if in == "" {
		var err error
		if in, err = specgen.SpecPath(); err != nil {
			return err
		}
	}
	raw, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	src, err := specgen.Generate(raw)
	if err != nil {
		return err
	}
	return os.WriteFile(out, src, 0o644)
}
