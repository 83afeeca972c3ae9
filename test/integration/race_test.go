//go:build race

package integration

// raceEnabled: the binary runs under the race detector.
const raceEnabled = true
