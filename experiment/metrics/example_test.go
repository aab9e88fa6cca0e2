package metrics_test

import (
	"fmt"

	"github.com/stl-defense/stl/experiment/metrics"
)

func ExampleNewAccuracy() {
	fmt.Println(metrics.NewAccuracy(857, 1000))
	// Output: 0.8570 [0.8339, 0.8773] (n=1000)
}
