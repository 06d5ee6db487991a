package guard

import "time"

// Clock times plans on the allocator's own clock. A plan version's
// timeout runs from when the Clock first saw that version, so no other
// machine's clock matters; a new allocator starts timing afresh, which can
// only ever delay a rollback, never hasten it.
type Clock struct {
	seen map[string]sighting
}

type sighting struct {
	version string
	at      time.Time
}

// Due returns the plans to roll back now: those whose current version was
// first seen at least its timeout ago, and those the allocator already
// took over (RollingBack) and must finish. It forgets plans that are
// gone.
func (c *Clock) Due(plans []Armed, now time.Time) []Armed {
	if c.seen == nil {
		c.seen = map[string]sighting{}
	}
	present := make(map[string]bool, len(plans))
	var due []Armed
	for _, a := range plans {
		present[a.Name] = true
		s, ok := c.seen[a.Name]
		if !ok || s.version != a.ResourceVersion {
			s = sighting{version: a.ResourceVersion, at: now}
			c.seen[a.Name] = s
		}
		if a.Plan.RollingBack || now.Sub(s.at) >= a.Plan.TimeoutOrDefault() {
			due = append(due, a)
		}
	}
	for name := range c.seen {
		if !present[name] {
			delete(c.seen, name)
		}
	}
	return due
}
