package serve

import (
	"fmt"
	"time"

	"github.com/stl-defense/stl/internal/option"
)

// Options are the service's limits and batching parameters. The zero
// value is not valid; start from DefaultOptions.
type Options struct {
	// MaxBodyBytes bounds a request body (default 32 MiB); a larger one
	// is answered 413.
	MaxBodyBytes int64
	// MaxSide bounds the width and height of a decoded image (default
	// 4096), checked from the image header before decoding; a larger one
	// is answered 413. Images must in any case have the size the defense
	// and the classifier take.
	MaxSide int
	// MaxImages bounds the images of one request (default 64); more is
	// answered 413. It may not exceed MaxBatch.
	MaxImages int
	// MaxBatch is the largest batch handed to the defense (default 64
	// images); BatchWindow (default 5 ms) is how long a worker waits for
	// more requests to join a batch that is not full.
	MaxBatch    int
	BatchWindow time.Duration
	// QueueImages bounds the images waiting for a worker (default 256);
	// a request that would exceed it is answered 429.
	QueueImages int
	// Workers is the number of batches processed at once (default 1:
	// the projection already spreads a batch's images over every core).
	Workers int
	// Timeout is each request's deadline from its arrival (default 30 s);
	// a request still waiting or computing then is answered 503.
	Timeout time.Duration
	// DrainTimeout bounds the graceful shutdown (default 30 s): requests
	// in flight are finished, new connections refused.
	DrainTimeout time.Duration
	// JPEGQuality is the quality of JPEG answers (default 95).
	JPEGQuality int
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{
		MaxBodyBytes: 32 << 20,
		MaxSide:      4096,
		MaxImages:    64,
		MaxBatch:     64,
		BatchWindow:  5 * time.Millisecond,
		QueueImages:  256,
		Workers:      1,
		Timeout:      30 * time.Second,
		DrainTimeout: 30 * time.Second,
		JPEGQuality:  95,
	}
}

// OptionError reports an invalid option: the field (Options.X), its
// value and what is wanted; the project's one option error type.
type OptionError = option.Error

func bad(field string, value any, want string) error {
	return option.New("serve", "Options."+field, value, "want "+want)
}

// Validate returns an *OptionError for the first invalid option.
func (o Options) Validate() error {
	switch {
	case o.MaxBodyBytes < 1:
		return bad("MaxBodyBytes", o.MaxBodyBytes, ">= 1")
	case o.MaxSide < 1 || o.MaxSide > 1<<15:
		return bad("MaxSide", o.MaxSide, "1..32768")
	case o.MaxBatch < 1:
		return bad("MaxBatch", o.MaxBatch, ">= 1")
	case o.MaxImages < 1 || o.MaxImages > o.MaxBatch:
		return bad("MaxImages", o.MaxImages, fmt.Sprintf("1..MaxBatch (%d)", o.MaxBatch))
	case o.BatchWindow < 0:
		return bad("BatchWindow", o.BatchWindow, ">= 0")
	case o.QueueImages < o.MaxImages:
		return bad("QueueImages", o.QueueImages, fmt.Sprintf(">= MaxImages (%d)", o.MaxImages))
	case o.Workers < 1:
		return bad("Workers", o.Workers, ">= 1")
	case o.Timeout <= 0:
		return bad("Timeout", o.Timeout, "> 0")
	case o.DrainTimeout < 0:
		return bad("DrainTimeout", o.DrainTimeout, ">= 0")
	case o.JPEGQuality < 1 || o.JPEGQuality > 100:
		return bad("JPEGQuality", o.JPEGQuality, "1..100")
	}
	return nil
}
