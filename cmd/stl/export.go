package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/nn"
	"github.com/stl-defense/stl/nn/onnx"
)

func init() {
	exportCmd := &cobra.Command{
		Use:   "export",
		Short: "Write a classifier in another framework's format",
	}
	var model, out string
	onnxCmd := &cobra.Command{
		Use:   "onnx --model DIR --out FILE.onnx",
		Short: "Export a classifier of stl train classifier to ONNX",
		Long: `export onnx writes a model directory of "stl train classifier" (vgg-small or
resnet-20) as an ONNX file (IR version 8, opset 13): input "x" (N, C, H, W) pixels
in [0, 1] with the input normalization inside, output "logits" (N, K). The file
loads back with --model FILE.onnx to the same logits (docs/models.md).

  stl export onnx --model runs/clf --out clf.onnx`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExportONNX(cmd.Context(), cmd.OutOrStdout(), model, out)
		},
	}
	onnxCmd.Flags().StringVar(&model, "model", "", "model directory of stl train classifier (required)")
	onnxCmd.Flags().StringVar(&out, "out", "", "the ONNX file to write (required)")
	exportCmd.AddCommand(onnxCmd)
	rootCmd.AddCommand(exportCmd)
}

func runExportONNX(_ context.Context, stdout io.Writer, model, out string) error {
	if model == "" || out == "" {
		return usagef("--model and --out are required")
	}
	m, err := nn.Load(model)
	if err != nil {
		return err
	}
	if err := onnx.WriteFile(out, m); err != nil {
		return err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return err
	}
	c, h, w := m.InputShape()
	fmt.Fprintf(stdout, "exported %s (%s, %dx%dx%d, %d classes) -> %s (%d bytes)\n", model, m.Config().Arch, c, h, w, m.NumClasses(), out, fi.Size())
	return nil
}
