package shop

import "errors"

// ErrNotFound is returned by the helpers when the row they should change or
// reference does not exist.
var ErrNotFound = errors.New("shop: row not found")

// ErrNotEmpty is returned by Seed when the schema already holds data: seeded
// ids start at 1, so seeding twice would collide.
var ErrNotEmpty = errors.New("shop: schema already has data")

// ErrNotSeeded is returned by the Generator when the schema has no customers,
// products or campaigns to build traffic from.
var ErrNotSeeded = errors.New("shop: schema has no seed data")

// ErrInvalidConfig is returned for a config that fails validation.
var ErrInvalidConfig = errors.New("shop: invalid config")

// errSkip reports that a generator step found nothing to change (say, no
// open order), so the generator makes another kind of change instead.
var errSkip = errors.New("shop: nothing to change")
