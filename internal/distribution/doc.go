// Package distribution checks the collector that builder-config.yaml builds: its components and
// the example configurations under testdata/config.
package distribution
