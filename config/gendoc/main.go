// Command gendoc writes docs/configuration.md from package config (make
// generate).
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/acme/usersd/config"
)

func main() {
	out := flag.String("o", "docs/configuration.md", "the file to write")
	flag.Parse()
	if err := os.WriteFile(*out, []byte(config.Markdown()), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "gendoc:", err)
		os.Exit(1)
	}
}
