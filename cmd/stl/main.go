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
	"strings"
	"syscall"

	"github.com/spf13/cobra"
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

// usageError marks an error caused by the command line itself.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// usageAnyModel says what a flag taking a classifier accepts: whatever
// experiment.LoadModel reads.
const usageAnyModel = "classifier: a directory written by 'stl train classifier', an ONNX file or PyTorch weights as ARCH:FILE.safetensors (see docs/models.md)"

// orList joins names as "a, b or c".
func orList(names []string) string { return joinList(names, "or") }

// joinList joins names as "a, b <conj> c".
func joinList(names []string, conj string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " " + conj + " " + names[len(names)-1]
}

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
	if errors.As(err, &ue) {
		return exitUsage
	}
	var cf checksFailed
	if errors.As(err, &cf) {
		return exitChecks
	}
	return exitError
}
