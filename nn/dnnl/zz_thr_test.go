package dnnl
import ("testing";"os";"runtime";"sync")
func TestZZThreads(t *testing.T) {
	p := ConvParams{N: 8, C: 16, H: 16, W: 16, K: 16, R: 3, S: 3, StrideH: 1, StrideW: 1, PadH: 1, PadW: 1}
	c, _ := NewConv(p)
	x, w, y := make([]float32, p.srcLen()), make([]float32, p.weightLen()), make([]float32, p.dstLen())
	n := func() int { e, _ := os.ReadDir("/proc/self/task"); return len(e) }
	t.Logf("threads before: %d, omp %d", n(), Threads())
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() { defer wg.Done(); runtime.LockOSThread(); mu.Lock(); c.Forward(y, x, w, nil); mu.Unlock() }()
	}
	wg.Wait()
	t.Logf("threads after 50 goroutines (locked, exiting): %d", n())
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() { defer wg.Done(); mu.Lock(); c.Forward(y, x, w, nil); mu.Unlock() }()
	}
	wg.Wait()
	t.Logf("threads after 50 goroutines (unlocked): %d", n())
}
