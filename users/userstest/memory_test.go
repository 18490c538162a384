package userstest_test

import (
	"testing"

	"github.com/acme/usersd/users"
	"github.com/acme/usersd/users/userstest"
)

func TestMemoryKeepsTheContract(t *testing.T) {
	t.Parallel()
	userstest.TestStorage(t, func(*testing.T) users.Storage { return userstest.NewMemory() })
}
