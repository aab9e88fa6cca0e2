// Package stlbeam runs the project's long image jobs as Apache Beam
// pipelines, so that an engine a user already operates (Flink, Spark,
// Google Cloud Dataflow, or Beam's in-process Go runner, prism) spreads
// them over many workers: the STL projection of `stl defend` over a set
// cut into shards, each shard one element, each worker loading the defense
// once, each shard's output written atomically and skipped when a re-run
// finds it finished, and a deterministic merge into the output one
// unsharded `stl defend` writes.
//
// It lives in its own module so that the Beam SDK and its dependencies
// are fetched only by those who use it.
package stlbeam
