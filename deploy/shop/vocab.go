package shop

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// vocab holds the word lists that sample data is drawn from. It is built per
// Seed or Generator rather than kept in package variables, so nothing global
// can be changed under another caller.
type vocab struct {
	places                                  []place
	first, last, segments, tiers, brands    []string
	colors, warehouses, channels, referrers []string
	userAgents, words                       []string
	categories                              []category
}

func newVocab() *vocab {
	return &vocab{
		places: places(), first: firstNames(), last: lastNames(), segments: segments(),
		tiers: tiers(), brands: brands(), colors: colors(), warehouses: warehouses(),
		channels: channels(), referrers: referrers(), userAgents: userAgents(),
		words: words(), categories: categories(),
	}
}

// place is a city with its state or region, ISO country and UTC offset.
type place struct {
	city, state, country string
	utcOffsetHours       int
}

func places() []place {
	return []place{
		{"Seattle", "WA", "US", -8}, {"Austin", "TX", "US", -6}, {"Boston", "MA", "US", -5},
		{"Denver", "CO", "US", -7}, {"Chicago", "IL", "US", -6}, {"Miami", "FL", "US", -5},
		{"Portland", "OR", "US", -8}, {"Atlanta", "GA", "US", -5}, {"Toronto", "ON", "CA", -5},
		{"Vancouver", "BC", "CA", -8}, {"Berlin", "BE", "DE", 1}, {"Munich", "BY", "DE", 1},
		{"Lyon", "ARA", "FR", 1}, {"Paris", "IDF", "FR", 1}, {"Leeds", "ENG", "GB", 0},
		{"Glasgow", "SCT", "GB", 0}, {"São Paulo", "SP", "BR", -3}, {"Osaka", "27", "JP", 9},
		{"Kraków", "MA", "PL", 1}, {"Zürich", "ZH", "CH", 1},
	}
}

func firstNames() []string {
	return []string{
		"Ava", "Liam", "Noah", "Emma", "Olivia", "Mateo", "Sofia", "Lucas", "Mia", "Elena",
		"Hiro", "Yuki", "Amara", "Kofi", "Zoë", "Chloé", "Björn", "Ingrid", "Priya", "Arjun",
		"Fatima", "Omar", "Léa", "Jakub", "Marta", "Diego", "Lucía", "Wei", "Mei", "Sam",
	}
}

func lastNames() []string {
	return []string{
		"Smith", "García", "Müller", "Dubois", "Rossi", "Nowak", "Tanaka", "Silva", "O'Brien",
		"Nguyen", "Kim", "Patel", "Okafor", "Jensen", "Novak", "Fischer", "Moreau", "Costa",
		"Schmidt", "Ivanova", "Haddad", "Cohen", "Larsen", "Santos", "Park",
	}
}

func segments() []string { return []string{"consumer", "corporate", "home_office"} }

func tiers() []string { return []string{"bronze", "silver", "gold", "platinum"} }

// category is a product category with its subcategories.
type category struct {
	name string
	subs []string
}

func categories() []category {
	return []category{
		{"electronics", []string{"audio", "phones", "laptops", "cameras", "accessories"}},
		{"home", []string{"kitchen", "furniture", "lighting", "bedding"}},
		{"apparel", []string{"men", "women", "kids", "shoes"}},
		{"sports", []string{"outdoor", "fitness", "cycling"}},
		{"books", []string{"fiction", "nonfiction", "comics"}},
		{"beauty", []string{"skincare", "fragrance", "makeup"}},
		{"toys", []string{"puzzles", "building", "dolls"}},
		{"grocery", []string{"coffee", "snacks", "pantry"}},
	}
}

func brands() []string {
	return []string{
		"Acme", "Northwind", "Globex", "Initech", "Umbrella", "Stark", "Wayne", "Hooli",
		"Vandelay", "Soylent", "Tyrell", "Cyberdyne", "Wonka", "Gringotts", "Oceanic",
	}
}

func colors() []string {
	return []string{"black", "white", "red", "blue", "green", "grey", "navy", "beige"}
}

func warehouses() []string { return []string{"SEA1", "AUS1", "BOS1", "BER1", "OSA1"} }

func channels() []string { return []string{"email", "search", "social", "display", "affiliate"} }

func referrers() []string {
	return []string{"https://www.google.com/", "https://duckduckgo.com/", "https://news.ycombinator.com/",
		"https://t.co/x", "https://mail.example.com/"}
}

func userAgents() []string {
	return []string{
		"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148",
		"Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/126.0 Mobile Safari/537.36",
	}
}

func words() []string {
	return strings.Fields(`durable light compact premium classic modern soft sturdy quiet fast
		ergonomic washable recycled organic handmade wireless portable stainless waterproof
		adjustable foldable vintage elegant bold minimal smart eco cozy bright rugged
		design comfort quality everyday travel weekend studio garden kitchen office outdoor
		battery fabric leather cotton steel bamboo glass ceramic wool silicone aluminium
		warranty includes features perfect gift pairs easily with fits most built for
		long lasting use made from carefully selected materials tested by our team`)
}

// pick returns a uniformly chosen element of xs.
func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// between returns a uniform integer in [lo, hi].
func between(r *rand.Rand, lo, hi int) int { return lo + r.IntN(hi-lo+1) }

// chance reports true with probability p.
func chance(r *rand.Rand, p float64) bool { return r.Float64() < p }

func (v *vocab) fullName(r *rand.Rand) string { return pick(r, v.first) + " " + pick(r, v.last) }

// email builds an address that is unique per (name, n) without needing a
// uniqueness check.
func email(name string, n uint64) string {
	local := strings.ToLower(strings.NewReplacer(" ", ".", "'", "").Replace(name))
	return fmt.Sprintf("%s.%d@example.com", local, n)
}

func phone(r *rand.Rand) string {
	return fmt.Sprintf("+1-%03d-%03d-%04d", between(r, 200, 999), between(r, 200, 999), r.IntN(10000))
}

// description builds product text of about size bytes from random words; the
// mix of words keeps it realistic while still compressing somewhat.
func (v *vocab) description(r *rand.Rand, name string, size int) string {
	var b strings.Builder
	b.Grow(size + 16)
	b.WriteString(name)
	b.WriteString(". ")
	for b.Len() < size {
		b.WriteString(pick(r, v.words))
		if r.IntN(12) == 0 {
			b.WriteString(". ")
		} else {
			b.WriteByte(' ')
		}
	}
	return b.String()
}

// descriptionSize returns the size of a new description: one in ten is large
// enough (9–24 KB) to be stored out of line.
func descriptionSize(r *rand.Rand) int {
	if r.IntN(10) == 0 {
		return between(r, 9*1024, 24*1024)
	}
	return between(r, 120, 1500)
}

// newUUID draws a random version 4 UUID from r, so sessions are reproducible.
func newUUID(r *rand.Rand) [16]byte {
	var u [16]byte
	for i := 0; i < 16; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			u[i+j] = byte(v >> (8 * j))
		}
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

// cents formats an amount of hundredths as a decimal string.
func cents(v int64) string { return fmt.Sprintf("%d.%02d", v/100, v%100) }

// tenThousandths formats an amount of 1/10000 as a decimal string.
func tenThousandths(v int64) string { return fmt.Sprintf("%d.%04d", v/10000, v%10000) }
