package serve

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBatcherDeadlines: at the measured time per image, a request whose
// images and those before it would not be computed before its deadline
// is refused at submission, and a queued one that a batch would not
// finish in time is answered at once instead of being computed.
func TestBatcherDeadlines(t *testing.T) {
	b := &batcher{capacity: 10, maxBatch: 4, onQueue: func(int) {}, wake: make(chan struct{}, 1), perImage: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 2500*time.Millisecond)
	defer cancel()
	jobs := make([]*job, 3)
	for i := range jobs {
		jobs[i] = &job{ctx: ctx, x: seeded(1), done: make(chan result, 1)}
	}
	if err := b.submit(jobs[0]); err != nil {
		t.Fatal(err)
	}
	if err := b.submit(jobs[1]); err != nil {
		t.Fatalf("second image, 2 s of work for a 2.5 s deadline: %v", err)
	}
	if err := b.submit(jobs[2]); !errors.Is(err, errTooSlow) {
		t.Fatalf("third image, 3 s of work for a 2.5 s deadline: %v, want errTooSlow", err)
	}
	if err := b.submit(&job{ctx: context.Background(), x: seeded(1), done: make(chan result, 1)}); err != nil {
		t.Fatalf("a request without a deadline: %v", err)
	}
	b.perImage = 2 * time.Second
	batch, n := b.take(nil, 0)
	if len(batch) != 2 || n != 2 || batch[0] != jobs[0] || b.queued != 0 {
		t.Fatalf("batch of %d jobs, %d images, %d left queued", len(batch), n, b.queued)
	}
	select {
	case r := <-jobs[1].done:
		if !errors.Is(r.err, errTooSlow) {
			t.Errorf("second job answered %v", r.err)
		}
	default:
		t.Error("the job a batch could not finish in time was not answered")
	}
	if err := b.submit(&job{ctx: context.Background(), x: seeded(11), done: make(chan result, 1)}); !errors.Is(err, errQueueFull) {
		t.Errorf("11 images in a queue of 10: %v", err)
	}
}
