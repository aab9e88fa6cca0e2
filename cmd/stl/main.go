// Command stl trains, applies and evaluates the stratified convolutional
// sparse coding defense. Each subcommand lives in a file of its own that only
// wires flags to the libraries; exit codes are decided here.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/stl-defense/stl/internal/cli"
)

// Exit codes.
const (
	exitOK        = 0
	exitError     = 1
	exitUsage     = 2
	exitChecks    = 3 // stl evaluate: the evaluation ran and a check failed
	exitCancelled = 130
)

var rootCmd = &cobra.Command{
	Use:           "stl",
	Short:         "Adversarial defense by stratified convolutional sparse coding",
	Long:          "stl trains and applies the Sparse Transformation Layer defense (Sun et al., CVPR 2019)\nand the classifiers, attacks and baselines needed to evaluate it.",
	SilenceUsage:  true,
	SilenceErrors: true,
}

// usageError marks an error caused by the command line itself (as
// cli.UsageError does for the flags it checks).
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// usageAnyModel says what a flag taking a classifier accepts: whatever
// experiment.LoadModel reads.
const usageAnyModel = cli.UsageAnyModel

// orList joins names as "a, b or c".
func orList(names []string) string { return cli.OrList(names) }

// joinList joins names as "a, b <conj> c".
func joinList(names []string, conj string) string { return cli.JoinList(names, conj) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rootCmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return usageError{err} })
	err := rootCmd.ExecuteContext(ctx)
	os.Exit(exitCode(ctx, err))
}

func exitCode(ctx context.Context, err error) int {
	if err == nil {
		return exitOK
	}
	if errors.Is(err, context.Canceled) || ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "stl: interrupted; finished work is saved, run the same command again to resume")
		return exitCancelled
	}
	fmt.Fprintln(os.Stderr, "stl:", err)
	var ue usageError
	var cue cli.UsageError
	if errors.As(err, &ue) || errors.As(err, &cue) {
		return exitUsage
	}
	var cf checksFailed
	if errors.As(err, &cf) {
		return exitChecks
	}
	return exitError
}
