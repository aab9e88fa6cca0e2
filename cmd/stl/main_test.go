package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stl-defense/stl/internal/cli"
)

func TestExitCode(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		err  error
		want int
	}{
		{"ok", context.Background(), nil, exitOK},
		{"error", context.Background(), errors.New("x"), exitError},
		{"usage", context.Background(), usagef("bad flag"), exitUsage},
		{"shared flags' usage", context.Background(), fmt.Errorf("attack: %w", cli.UsageError{Err: errors.New("bad budget")}), exitUsage},
		{"cancelled", cancelled, context.Canceled, exitCancelled},
		{"checks failed", context.Background(), checksFailed{ids: []string{"square"}}, exitChecks},
	}
	for _, tc := range tests {
		if got := exitCode(tc.ctx, tc.err); got != tc.want {
			t.Errorf("%s: exitCode = %d, want %d", tc.name, got, tc.want)
		}
	}
}
