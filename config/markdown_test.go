package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/acme/usersd/config"
)

// TestConfigurationDocIsCurrent: docs/configuration.md is what
// make generate writes now.
func TestConfigurationDocIsCurrent(t *testing.T) {
	t.Parallel()
	got, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != config.Markdown() {
		t.Error("docs/configuration.md is stale: run make generate and commit it")
	}
	for _, v := range config.Variables {
		if !strings.Contains(string(got), "| `"+v.Name+"` |") {
			t.Errorf("%s is missing from docs/configuration.md", v.Name)
		}
		if v.Meaning == "" || v.Group == "" || (v.Default == "" && v.Unset == "") {
			t.Errorf("%s: %+v lacks a meaning, a group, or what unset means", v.Name, v)
		}
	}
}
