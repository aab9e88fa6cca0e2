// Command stl-beam runs the projection of `stl defend` as an Apache Beam
// pipeline: the images cut into --shards parts, spread over the runner's
// workers, merged into --out. Beam's own flags choose the runner
// (--runner=prism, the in-process Go runner, by default; flink, spark or
// dataflow with their endpoints); see docs/scale.md.
//
//	stl-beam defend --defense defenses/c10 --in test.npy --out proj.npy --shards 16
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/apache/beam/sdks/v2/go/pkg/beam"
	"github.com/apache/beam/sdks/v2/go/pkg/beam/x/beamx"

	"github.com/stl-defense/stl/beam/stlbeam"
)

var (
	defenseDir = flag.String("defense", "", "defense directory written by 'stl defense train' (required)")
	in         = flag.String("in", "", "images to project, as 'stl defend --in' takes them (required)")
	out        = flag.String("out", "", "merged output .npy (required)")
	universal  = flag.Bool("universal", false, "use the universal dictionary (STL) instead of the per-cluster ones")
	shards     = flag.Int("shards", 8, "parts the images are cut into (the pipeline's elements)")
	batch      = flag.Int("batch", 64, "images projected per batch inside a shard")
	partsDir   = flag.String("parts", "", "directory of the shards' outputs (default: OUT.parts); a re-run skips finished shards")
)

func main() {
	if len(os.Args) < 2 || os.Args[1] != "defend" {
		fmt.Fprintln(os.Stderr, "usage: stl-beam defend --defense DIR --in IMAGES --out OUT.npy [--shards N] [--runner=prism|flink|spark|dataflow ...]")
		os.Exit(2)
	}
	os.Args = append(os.Args[:1], os.Args[2:]...)
	flag.Parse()
	beam.Init()
	p, s := beam.NewPipelineWithRoot()
	if _, err := stlbeam.Defend(s, stlbeam.DefendOptions{Defense: *defenseDir, In: *in, Out: *out, Universal: *universal,
		Shards: *shards, Batch: *batch, PartsDir: *partsDir}); err != nil {
		fmt.Fprintln(os.Stderr, "stl-beam:", err)
		os.Exit(2)
	}
	if err := beamx.Run(context.Background(), p); err != nil {
		fmt.Fprintln(os.Stderr, "stl-beam:", err)
		os.Exit(1)
	}
	fmt.Printf("projected %s -> %s\n", *in, *out)
}
