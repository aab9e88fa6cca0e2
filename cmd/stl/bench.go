package main

import "github.com/spf13/cobra"

// benchCmd is the parent of the benchmark subcommands ("stl bench csc",
// "stl bench nn", ...). Each subcommand lives in its own file and attaches
// itself with benchCmd.AddCommand in that file's init.
var benchCmd = &cobra.Command{
	Use:   "bench",
	Short: "Measure the speed of the project's engines",
	Long: "bench runs the project's speed benchmarks on shipped or seeded inputs and prints\n" +
		"the figures, with the accuracy reached, so that speed is never bought with accuracy.",
	Args: cobra.NoArgs,
	RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
}

func init() { rootCmd.AddCommand(benchCmd) }
