package serve

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stl-defense/stl/tensor"
)

// job is one request's images waiting for, or in, a batch.
type job struct {
	ctx      context.Context
	x        *tensor.Tensor // (n, C, H, W)
	classify bool
	done     chan result // buffered: the worker never blocks on it
}

func (j *job) images() int { return j.x.Shape[0] }

// result is what a batch computed for one job.
type result struct {
	y, logits *tensor.Tensor
	err       error
}

var (
	errQueueFull = errors.New("serve: queue full")
	errTooSlow   = errors.New("serve: the images queued would not be computed before the request's deadline")
	errClosed    = errors.New("serve: shutting down")
)

// batchFunc computes a batch: it fills the results of every job (in
// order) or returns an error for all of them.
type batchFunc func(ctx context.Context, jobs []*job) ([]result, error)

// batcher queues jobs, at most capacity images, and runs them in batches
// of at most maxBatch images on its workers: a worker takes the oldest
// job and gathers, for at most window, the jobs of the same image shape
// that follow it.
type batcher struct {
	capacity, maxBatch int
	window             time.Duration
	run                batchFunc
	onQueue            func(images int) // called with the queue length after each change

	mu     sync.Mutex
	queue  []*job
	queued int // images in queue
	busy   int // images in the batches being computed
	// perImage is the recent computing time per image (an exponentially
	// weighted mean over batches, 0 before the first): what admission and
	// batching use to tell whether a request can be answered before its
	// deadline.
	perImage time.Duration
	closed   bool
	wake     chan struct{} // one token: the queue changed
	wg       sync.WaitGroup
}

func newBatcher(capacity, maxBatch int, window time.Duration, workers int, run batchFunc, onQueue func(int)) *batcher {
	b := &batcher{capacity: capacity, maxBatch: maxBatch, window: window, run: run, onQueue: onQueue, wake: make(chan struct{}, 1)}
	b.wg.Add(workers)
	for range workers {
		go b.worker()
	}
	return b
}

// signal wakes one waiting worker.
func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// submit queues j, or returns errQueueFull when its images do not fit,
// errTooSlow when, at the recent time per image, the images before it and
// its own would not be computed before its deadline (a queue longer than
// that only holds requests that will time out), or errClosed after close.
func (b *batcher) submit(j *job) error {
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return errClosed
	case b.queued+j.images() > b.capacity:
		b.mu.Unlock()
		return errQueueFull
	case !b.inTime(j, b.queued+b.busy+j.images()):
		b.mu.Unlock()
		return errTooSlow
	}
	b.queue = append(b.queue, j)
	b.queued += j.images()
	q := b.queued
	b.mu.Unlock()
	b.onQueue(q)
	b.signal()
	return nil
}

// remove takes j out of the queue if it is still there (its request was
// cancelled or timed out) and reports whether it was.
func (b *batcher) remove(j *job) bool {
	b.mu.Lock()
	i := slices.Index(b.queue, j)
	if i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		b.queued -= j.images()
	}
	q := b.queued
	b.mu.Unlock()
	if i >= 0 {
		b.onQueue(q)
	}
	return i >= 0
}

// close stops taking jobs; the workers finish the queued ones and exit.
// wait waits for them.
func (b *batcher) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	close(b.wake)
}

func (b *batcher) wait() { b.wg.Wait() }

// wouldAdmit reports whether submit would now take a job of one image
// due within timeout: a cheap check before a request's body is read.
func (b *batcher) wouldAdmit(timeout time.Duration) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.closed:
		return errClosed
	case b.queued+1 > b.capacity:
		return errQueueFull
	case b.perImage > 0 && time.Duration(b.queued+b.busy+1)*b.perImage >= timeout:
		return errTooSlow
	}
	return nil
}

// inTime reports whether images images, computed at the recent time per
// image, would be done before j's deadline. b.mu is held.
func (b *batcher) inTime(j *job, images int) bool {
	d, ok := j.ctx.Deadline()
	return !ok || b.perImage == 0 || time.Now().Add(time.Duration(images)*b.perImage).Before(d)
}

// take moves to batch the queued jobs, from the oldest, that have the
// shape of batch[0] (or of the first one when batch is empty) and fit in
// maxBatch images with those already in batch; jobs whose context is done
// are dropped, and jobs that the batch would not finish before their
// deadline are answered errTooSlow at once instead of being computed in
// vain. It returns the batch and its image count.
func (b *batcher) take(batch []*job, n int) ([]*job, int) {
	b.mu.Lock()
	kept := b.queue[:0]
	for _, j := range b.queue {
		switch {
		case j.ctx.Err() != nil:
			b.queued -= j.images()
		case !b.inTime(j, b.busy+n+j.images()):
			b.queued -= j.images()
			j.done <- result{err: errTooSlow}
		case (len(batch) == 0 || slices.Equal(j.x.Shape[1:], batch[0].x.Shape[1:])) && n+j.images() <= b.maxBatch:
			batch = append(batch, j)
			n += j.images()
			b.queued -= j.images()
		default:
			kept = append(kept, j)
		}
	}
	clear(b.queue[len(kept):])
	b.queue = kept
	q, more := b.queued, len(kept) > 0
	b.mu.Unlock()
	b.onQueue(q)
	if more {
		b.signal() // another worker may take the rest
	}
	return batch, n
}

// worker gathers and runs batches until the batcher is closed and empty.
func (b *batcher) worker() {
	defer b.wg.Done()
	var timer *time.Timer
	for {
		batch, n := b.take(nil, 0)
		if len(batch) == 0 {
			if _, ok := <-b.wake; !ok && b.empty() {
				return
			}
			continue
		}
		if n < b.maxBatch && b.window > 0 {
			if timer == nil {
				timer = time.NewTimer(b.window)
			} else {
				timer.Reset(b.window)
			}
		gather:
			for n < b.maxBatch {
				select {
				case _, ok := <-b.wake:
					batch, n = b.take(batch, n)
					if !ok {
						break gather
					}
				case <-timer.C:
					batch, n = b.take(batch, n)
					break gather
				}
			}
			timer.Stop()
		}
		b.process(batch)
	}
}

func (b *batcher) empty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.queue) == 0
}

// process runs one batch under a context that is cancelled once every
// job's context is done, hands each job its result and updates the time
// per image.
func (b *batcher) process(batch []*job) {
	n := 0
	for _, j := range batch {
		n += j.images()
	}
	b.mu.Lock()
	b.busy += n
	b.mu.Unlock()
	start := time.Now()
	var err error
	defer func() {
		// A cancelled or failed batch says nothing of the time per image.
		per := time.Since(start) / time.Duration(n)
		b.mu.Lock()
		b.busy -= n
		switch {
		case err != nil:
		case b.perImage == 0:
			b.perImage = per
		default:
			b.perImage = (3*b.perImage + per) / 4
		}
		b.mu.Unlock()
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var live atomic.Int32
	live.Store(int32(len(batch)))
	for _, j := range batch {
		stop := context.AfterFunc(j.ctx, func() {
			if live.Add(-1) == 0 {
				cancel()
			}
		})
		defer stop()
	}
	var res []result
	res, err = b.run(ctx, batch)
	for i, j := range batch {
		if err != nil {
			j.done <- result{err: err}
		} else {
			j.done <- res[i]
		}
	}
}
