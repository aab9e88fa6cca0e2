//go:build !linux

package nn

import "time"

// processCPU is unknown on this system: Bench reports 0 CPU figures.
func processCPU() time.Duration { return 0 }
