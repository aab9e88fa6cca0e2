package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/stl-defense/stl/internal/buildinfo"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version, the numerical kernels and the CPU",
		Long: "version prints the module version, the Go toolchain and build tags, the numerical\n" +
			"kernels this binary links (FFTW, OpenBLAS, oneDNN, or pure Go under -tags purego)\n" +
			"and the CPU with the vector extensions it reports. Reports record the same facts.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			v := "(devel)"
			tags := ""
			if bi, ok := debug.ReadBuildInfo(); ok {
				v = bi.Main.Version
				for _, s := range bi.Settings {
					if s.Key == "-tags" {
						tags = s.Value
					}
				}
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "stl %s %s %s/%s tags=%q\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, tags)
			for _, k := range buildinfo.Kernels() {
				fmt.Fprintf(w, "kernel %-4s %s\n", k.Role, k)
			}
			fmt.Fprintf(w, "cpu         %s\n", buildinfo.DetectCPU())
			return nil
		},
	})
}
