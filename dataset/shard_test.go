package dataset

import "testing"

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Shard
		bad  bool
	}{
		{in: "", want: Shard{}},
		{in: "0/1", want: Shard{0, 1}},
		{in: "3/4", want: Shard{3, 4}},
		{in: " 2 / 8 ", want: Shard{2, 8}},
		{in: "4/4", bad: true},
		{in: "-1/4", bad: true},
		{in: "1/0", bad: true},
		{in: "1", bad: true},
		{in: "a/b", bad: true},
		{in: "1/2/3", bad: true},
	} {
		got, err := ParseShard(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && got != tc.want) {
			t.Errorf("ParseShard(%q) = %v, %v; want %v, bad %v", tc.in, got, err, tc.want, tc.bad)
		}
		if !tc.bad && got.String() != "" {
			if again, err := ParseShard(got.String()); err != nil || again != got {
				t.Errorf("round trip of %v: %v, %v", got, again, err)
			}
		}
	}
}

// TestShardsPartition: for every set size and shard count the shards cover
// [0, n) in order, without overlap, sizes differing by at most one, and
// Set.Shard returns those images.
func TestShardsPartition(t *testing.T) {
	for _, n := range []int{0, 1, 2, 7, 10, 101} {
		for _, count := range []int{1, 2, 3, 4, 16} {
			next, small, large := 0, n, 0
			for i := range count {
				lo, hi := Shard{i, count}.Range(n)
				if lo != next || hi < lo {
					t.Fatalf("n=%d shard %d/%d: [%d,%d), want it to start at %d", n, i, count, lo, hi, next)
				}
				next = hi
				small, large = min(small, hi-lo), max(large, hi-lo)
			}
			if next != n || large-small > 1 {
				t.Errorf("n=%d count=%d: covered [0,%d), sizes %d..%d", n, count, next, small, large)
			}
		}
	}
	s := NewSet("s", 10, Shape{1, 1, 1}, []string{"a", "b"})
	for i := range 10 {
		s.Images.Data[i], s.Labels[i] = float32(i), i%2
	}
	got := s.Shard(Shard{1, 3})
	if got.Len() != 3 || got.Images.Data[0] != 3 || got.Labels[2] != 1 {
		t.Errorf("shard 1/3 of 10: %v labels %v", got.Images.Data, got.Labels)
	}
	if s.Shard(Shard{}) != s {
		t.Error("the whole-set shard is not the set itself")
	}
}

// TestShardBatchRange: the shards of a set cut at batch boundaries cover
// [0, n) in order, each starting on a batch boundary, and a shard beyond
// the batches holds nothing.
func TestShardBatchRange(t *testing.T) {
	for _, c := range []struct{ n, batch, count int }{
		{23, 4, 3}, {23, 4, 6}, {8, 8, 1}, {100, 7, 5}, {5, 10, 3},
	} {
		next := 0
		for i := range c.count {
			lo, hi := Shard{i, c.count}.BatchRange(c.n, c.batch)
			if hi <= lo {
				continue
			}
			if lo != next || lo%c.batch != 0 {
				t.Fatalf("%+v shard %d: [%d,%d), want it to start at %d on a batch boundary", c, i, lo, hi, next)
			}
			next = hi
		}
		if next != c.n {
			t.Errorf("%+v: covered [0,%d)", c, next)
		}
	}
	if lo, hi := (Shard{0, 3}).BatchRange(5, 10); hi > lo {
		t.Errorf("shard 0/3 of one batch: [%d,%d), want empty", lo, hi)
	}
}
