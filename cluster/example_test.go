package cluster_test

import (
	"context"
	"fmt"

	"github.com/stl-defense/stl/cluster"
	"github.com/stl-defense/stl/tensor"
)

// Codes are clustered by k-means++, then a new code is assigned to a
// cluster by the vote of its nearest clustered codes (section 3.4).
func Example() {
	codes, _ := tensor.FromData([]float32{0, 0, 0, 1, 1, 0, 9, 9, 9, 10, 10, 9}, 6, 2)
	opt := cluster.DefaultKMeansOptions()
	opt.K = 2
	km, err := cluster.FitKMeans(context.Background(), codes, opt, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("labels: %v inertia: %.4f\n", km.Labels, km.Inertia)

	vote, err := cluster.NewKNN(codes, km.Labels, cluster.KNNOptions{K: 3})
	if err != nil {
		fmt.Println(err)
		return
	}
	q, _ := tensor.FromData([]float32{8, 8, 0.5, 0.5}, 2, 2)
	got, _ := vote.Vote(nil, q)
	fmt.Println("votes:", got)
	// Output:
	// labels: [1 1 1 0 0 0] inertia: 2.6667
	// votes: [0 1]
}
