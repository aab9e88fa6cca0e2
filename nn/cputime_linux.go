package nn

import (
	"syscall"
	"time"
)

// processCPU returns the process's CPU time (user + system, all threads,
// including oneDNN's OpenMP workers). Bench reports it beside wall time
// because on a shared machine wall time measures the other jobs too.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
