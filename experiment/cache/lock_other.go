//go:build !unix

package cache

import "os"

// lockFile does nothing where flock is unavailable: concurrent runs in one
// directory are then the user's to avoid.
func lockFile(*os.File) error { return nil }
