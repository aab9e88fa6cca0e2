// Package cputime reads the process's CPU time, for benchmarks that run on
// shared machines where wall time measures the other jobs too.
package cputime

import "time"

// Process returns the CPU time (user + system, every thread) the process
// has used so far; 0 where the system does not report it.
func Process() time.Duration { return process() }
