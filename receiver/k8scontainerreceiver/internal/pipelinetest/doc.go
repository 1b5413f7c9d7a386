// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

// Package pipelinetest holds the tests that join the k8s_container receiver with the oom_counter
// processor, as a collector pipeline does: the counts at the end of the pipeline, exact or within
// their bounds, whatever the kubelet shows and whatever is lost on the way. It is a module of its
// own so that the receiver's module does not depend on the processor; being under the
// receiver's path, it drives the receiver's scraper, internal/scraper, directly.
package pipelinetest
