// Copyright The oomwatch Authors
// SPDX-License-Identifier: Apache-2.0

package containerstate

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/oomwatch/oomwatch/receiver/k8scontainerreceiver/internal/termination"
)

// The horizon: what a run of the receiver had reported when it last looked, so that a later run
// (after a collector restart) knows what, at its first sight of a container, no receiver reported.

// Horizon is what the receiver had reported when it looked at At.
type Horizon struct {
	// At is when it looked: everything visible then ended before.
	At time.Time
	// Ended are the terminations it knew that ended in At's second (end times are given to the
	// second): they tell an end in that second already reported from one after it. nil when not
	// known, as before a run has looked at any pod.
	Ended []termination.Key
	// Reported is, per pod, up to which instance it had reported the ends of each container.
	Reported []Reported
}

// Reported is how far the ends of one pod's containers were reported.
type Reported struct {
	PodUID types.UID `json:"pod_uid"`
	// Unended is, by container name, the lowest instance whose end was not reported.
	Unended map[string]int64 `json:"unended"`
	// Ended is, by container name, the container ID of the newest end reported, when it has
	// one: it tells that end from the next one where a status cannot name the instance.
	Ended map[string]string `json:"ended,omitempty"`
}

// containerRef names a container across runs.
type containerRef struct {
	pod  types.UID
	name string
}

// horizonBody is a Horizon's encoded part after its time. Records of earlier versions hold the
// Ended list alone, as a JSON array.
type horizonBody struct {
	Ended    []termination.Key `json:"ended"`
	Reported []Reported        `json:"reported,omitempty"`
}

// MarshalBinary encodes h: 8 bytes of Unix nanoseconds, then the rest as JSON when Ended is
// known.
func (h Horizon) MarshalBinary() ([]byte, error) {
	b := binary.LittleEndian.AppendUint64(nil, uint64(h.At.UnixNano()))
	if h.Ended == nil {
		return b, nil
	}
	body, err := json.Marshal(horizonBody{Ended: h.Ended, Reported: h.Reported})
	return append(b, body...), err
}

// errShortHorizon marks a record too short to hold a time.
var errShortHorizon = errors.New("horizon record shorter than 8 bytes")

// UnmarshalBinary decodes what MarshalBinary encoded, or a record of an earlier version. A record
// whose time is readable but whose rest is damaged keeps the time: the rest is dropped with the
// error, and the horizon's second then counts as before it.
func (h *Horizon) UnmarshalBinary(b []byte) error {
	*h = Horizon{}
	if len(b) < 8 {
		return errShortHorizon
	}
	h.At = time.Unix(0, int64(binary.LittleEndian.Uint64(b)))
	rest := b[8:]
	if len(rest) == 0 {
		return nil
	}
	var body horizonBody
	var err error
	if rest[0] == '[' {
		err = json.Unmarshal(rest, &body.Ended)
	} else {
		err = json.Unmarshal(rest, &body)
	}
	if err != nil {
		return err
	}
	h.Ended, h.Reported = body.Ended, body.Reported
	if h.Ended == nil {
		h.Ended = []termination.Key{}
	}
	return nil
}

// Resume tells what an earlier run of the receiver had reported when it last looked (what a
// DrainRecorded of that run handed out): at first sight, a termination that ended after that, or
// an instance from where that run had reported on, happened while no receiver watched, and is
// news.
func (t *Tracker) Resume(h Horizon) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resume(h)
}

func (t *Tracker) resume(h Horizon) {
	t.horizon = h.At
	t.endedKnown = h.Ended != nil
	t.ended = make(map[termination.Key]bool, len(h.Ended))
	for _, k := range h.Ended {
		t.ended[k] = true
	}
	t.unended = make(map[containerRef]int64, len(h.Reported))
	t.reportedEnd = make(map[containerRef]string)
	for _, r := range h.Reported {
		for name, instance := range r.Unended {
			t.unended[containerRef{r.PodUID, name}] = instance
		}
		for name, id := range r.Ended {
			t.reportedEnd[containerRef{r.PodUID, name}] = id
		}
	}
}

// afterHorizon tells that term ended after an earlier run last looked, and that run did not
// know it. End times have a second's precision: an end in the horizon's second may be before or
// after it; the terminations that run knew then tell which.
func (t *Tracker) afterHorizon(term termination.Termination) bool {
	switch {
	case t.horizon.IsZero():
		return false
	case !t.endedKnown:
		// Without the terminations that run knew, an end in the horizon's second is taken as
		// before it: history rather than a kill counted twice.
		return term.FinishedAt.After(t.horizon)
	case term.FinishedAt.Before(t.horizon.Truncate(time.Second)):
		return false
	}
	return !t.ended[term.Key()]
}

// horizonAt is what a later run, given at as its horizon, must know was already reported: the
// newest termination of each container if it ended in at's second or later, and how far each
// container's ends were reported.
func (t *Tracker) horizonAt(at time.Time) Horizon {
	return Horizon{At: at, Ended: t.endedAt(at), Reported: t.reportedNow()}
}

// endedAt returns the newest termination of each container if it ended in the second of at or
// later.
func (t *Tracker) endedAt(at time.Time) []termination.Key {
	second := at.Truncate(time.Second)
	out := []termination.Key{}
	for _, p := range t.pods {
		for _, c := range p.Containers {
			if c.HasLast && !c.Last.FinishedAt.Before(second) {
				out = append(out, c.Last.Key())
			}
		}
	}
	return out
}

// reportedNow is how far each container's ends are reported once the pending points are.
// Deleted pods are left out: no later run sees them.
func (t *Tracker) reportedNow() []Reported {
	var out []Reported
	for _, p := range t.pods {
		if p.deleted {
			continue
		}
		r := Reported{PodUID: p.UID, Unended: make(map[string]int64, len(p.Containers))}
		for _, c := range p.Containers {
			r.Unended[c.Name] = c.nextUnended
			if c.HasLast && c.Last.ContainerID != "" {
				if r.Ended == nil {
					r.Ended = make(map[string]string, len(p.Containers))
				}
				r.Ended[c.Name] = c.Last.ContainerID
			}
		}
		out = append(out, r)
	}
	return out
}
