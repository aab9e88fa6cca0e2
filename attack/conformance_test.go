package attack_test

import (
	"github.com/stl-defense/stl/attack"
	"github.com/stl-defense/stl/defense"
)

// Every defense is an attack Transform and the reverse: the two interfaces
// have the same method set, so BPDA and EOT take any defense.
var (
	_ attack.Transform  = defense.Transform(nil)
	_ defense.Transform = attack.Transform(nil)
	_ attack.Transform  = attack.Identity{}
)
