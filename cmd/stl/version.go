package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func init() {
	rootCmd.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version and build settings",
		Args:  cobra.NoArgs,
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
			fmt.Fprintf(cmd.OutOrStdout(), "stl %s %s %s/%s tags=%q\n", v, runtime.Version(), runtime.GOOS, runtime.GOARCH, tags)
			return nil
		},
	})
}
