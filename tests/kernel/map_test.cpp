// Maps on the running kernel: every map type the agent uses, through create, CRUD, iteration,
// batches and pins.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <set>
#include <vector>

#include "ebpf/ebpf.hpp"
#include "kernel_fixture.hpp"

namespace ebpf {
namespace {

using test::KernelTest;
using test::test_bpffs;

class MapTest : public KernelTest {};

map make(const map_options& o) {
    auto m = map::create(o);
    EXPECT_TRUE(m) << m.error().message();
    return m ? std::move(*m) : map();
}

TEST_F(MapTest, ArrayCrudIterateBatchPin) {
    const map_options opts{.type = BPF_MAP_TYPE_ARRAY,
                           .key_size = 4,
                           .value_size = 8,
                           .max_entries = 8,
                           .name = "t_array"};
    test_bpffs fs;
    {
        map m = make(opts);
        ASSERT_GE(m.fd(), 3);
        auto a = array<uint64_t>::view(m);
        ASSERT_OK(a);
        ASSERT_OK(a->update(3, 42));
        auto v = a->lookup(3);
        ASSERT_OK(v);
        EXPECT_EQ(*v, 42u);
        auto out = a->lookup(8);
        ASSERT_FALSE(out);
        EXPECT_NE(out.error().message().find("outside the array"), std::string::npos);
        // Array elements cannot be deleted: the kernel says EINVAL, and we pass it on.
        uint32_t k = 3;
        auto del = m.erase(&k);
        ASSERT_FALSE(del);
        EXPECT_EQ(del.error().code(), EINVAL);

        std::vector<uint32_t> keys;
        ASSERT_OK(m.for_each_key([&](const std::byte* p) {
            uint32_t key;
            std::memcpy(&key, p, 4);
            keys.push_back(key);
            return true;
        }));
        EXPECT_EQ(keys, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7}));

        std::vector<uint32_t> bk(8);
        std::iota(bk.begin(), bk.end(), 0u);
        std::vector<uint64_t> bv(8);
        for (size_t i = 0; i < 8; ++i) {
            bv[i] = 1000 + i;
        }
        auto written = m.update_batch(bk.data(), bv.data(), 8);
        ASSERT_OK(written);
        EXPECT_EQ(*written, 8u);
        batch_cursor cur;
        std::vector<uint32_t> rk(8);
        std::vector<uint64_t> rv(8);
        uint32_t total = 0;
        while (!cur.done()) {
            auto n = m.lookup_batch(cur, rk.data() + total, rv.data() + total, 3);
            ASSERT_OK(n);
            total += *n;
            ASSERT_LE(total, 8u);
        }
        EXPECT_EQ(total, 8u);
        EXPECT_EQ(rk, bk);
        EXPECT_EQ(rv, bv);

        ASSERT_OK(m.pin(fs.path("array")));
    }
    // The pin keeps the map alive after its last fd closed.
    auto again = map::from_pin(fs.path("array"), opts);
    ASSERT_OK(again);
    EXPECT_EQ(again->name(), "t_array");
    auto a = array<uint64_t>::view(*again);
    ASSERT_OK(a);
    EXPECT_EQ(*a->lookup(5), 1005u);
    auto wrong = opts;
    wrong.max_entries = 16;
    auto mismatch = map::from_pin(fs.path("array"), wrong);
    ASSERT_FALSE(mismatch);
    EXPECT_NE(mismatch.error().message().find("max_entries 8, expected 16"), std::string::npos)
        << mismatch.error().message();
}

TEST_F(MapTest, HashCrudIterateBatchPin) {
    const map_options opts{.type = BPF_MAP_TYPE_HASH,
                           .key_size = 4,
                           .value_size = 8,
                           .max_entries = 64,
                           .name = "t_hash"};
    test_bpffs fs;
    map m = make(opts);
    auto h = hash<uint32_t, uint64_t>::view(m);
    ASSERT_OK(h);
    auto none = h->lookup(7);
    ASSERT_OK(none);
    EXPECT_FALSE(none->has_value());
    ASSERT_OK(h->update(7, 70));
    EXPECT_EQ(h->lookup(7)->value(), 70u);
    auto dup = h->update(7, 71, BPF_NOEXIST);
    ASSERT_FALSE(dup);
    EXPECT_EQ(dup.error().code(), EEXIST);
    auto gone = h->erase(7);
    ASSERT_OK(gone);
    EXPECT_TRUE(*gone);
    auto again = h->erase(7);
    ASSERT_OK(again);
    EXPECT_FALSE(*again);

    std::vector<uint32_t> bk(50);
    std::vector<uint64_t> bv(50);
    for (uint32_t i = 0; i < 50; ++i) {
        bk[i] = i * 3;
        bv[i] = i * 30;
    }
    auto written = m.update_batch(bk.data(), bv.data(), 50);
    ASSERT_OK(written);
    EXPECT_EQ(*written, 50u);
    auto keys = h->keys();
    ASSERT_OK(keys);
    EXPECT_EQ(std::set<uint32_t>(keys->begin(), keys->end()),
              std::set<uint32_t>(bk.begin(), bk.end()));

    // Walk in batches of 16: the hash's batch position is a bucket, not a key.
    batch_cursor cur;
    std::map<uint32_t, uint64_t> seen;
    while (!cur.done()) {
        std::vector<uint32_t> rk(16);
        std::vector<uint64_t> rv(16);
        auto n = m.lookup_batch(cur, rk.data(), rv.data(), 16);
        ASSERT_OK(n);
        for (uint32_t i = 0; i < *n; ++i) {
            seen[rk[i]] = rv[i];
        }
    }
    ASSERT_EQ(seen.size(), 50u);
    for (uint32_t i = 0; i < 50; ++i) {
        EXPECT_EQ(seen[i * 3], i * 30);
    }

    auto erased = m.erase_batch(bk.data(), 10);
    ASSERT_OK(erased);
    EXPECT_EQ(*erased, 10u);
    EXPECT_EQ(h->keys()->size(), 40u);

    // Lookup-and-delete in one walk empties the map.
    batch_cursor drain;
    uint32_t drained = 0;
    while (!drain.done()) {
        std::vector<uint32_t> rk(64);
        std::vector<uint64_t> rv(64);
        auto n = m.lookup_batch(drain, rk.data(), rv.data(), 64, /*erase=*/true);
        ASSERT_OK(n);
        drained += *n;
    }
    EXPECT_EQ(drained, 40u);
    EXPECT_TRUE(h->keys()->empty());

    ASSERT_OK(h->update(1, 11));
    ASSERT_OK(m.pin(fs.path("hash")));
    auto pinned = map::from_pin(fs.path("hash"), opts);
    ASSERT_OK(pinned);
    auto ph = hash<uint32_t, uint64_t>::view(*pinned);
    ASSERT_OK(ph);
    EXPECT_EQ(ph->lookup(1)->value(), 11u);
    // Writes through one fd are seen through the other: it is one map.
    ASSERT_OK(ph->update(2, 22));
    EXPECT_EQ(h->lookup(2)->value(), 22u);
}

TEST_F(MapTest, PercpuArrayHoldsOneValuePerPossibleCpu) {
    const map_options opts{.type = BPF_MAP_TYPE_PERCPU_ARRAY,
                           .key_size = 4,
                           .value_size = 8,
                           .max_entries = 4,
                           .name = "t_pcpu_array"};
    test_bpffs fs;
    map m = make(opts);
    auto cpus = possible_cpus();
    ASSERT_OK(cpus);
    EXPECT_EQ(m.value_buffer_size(), 8u * *cpus);
    auto a = percpu_array<uint64_t>::view(m);
    ASSERT_OK(a);
    ASSERT_EQ(a->cpus(), *cpus);
    ASSERT_OK(a->update_all(1, 5));
    auto per = a->lookup(1);
    ASSERT_OK(per);
    ASSERT_TRUE(per->has_value());
    EXPECT_EQ(**per, std::vector<uint64_t>(*cpus, 5));

    std::vector<uint64_t> distinct(*cpus);
    std::iota(distinct.begin(), distinct.end(), 10u);
    ASSERT_OK(a->update(2, distinct));
    auto sum = a->sum(2);
    ASSERT_OK(sum);
    EXPECT_EQ(sum->value(), std::accumulate(distinct.begin(), distinct.end(), uint64_t{0}));
    auto wrong = a->update(2, std::span<const uint64_t>(distinct.data(), 1));
    if (*cpus != 1) {
        ASSERT_FALSE(wrong);
        EXPECT_NE(wrong.error().message().find("possible CPUs"), std::string::npos);
    }

    // A 4-byte value still takes an 8-byte slot per CPU.
    map small = make({.type = BPF_MAP_TYPE_PERCPU_ARRAY,
                      .key_size = 4,
                      .value_size = 4,
                      .max_entries = 2,
                      .name = "t_pcpu_small"});
    auto s = percpu_array<uint32_t>::view(small);
    ASSERT_OK(s);
    std::vector<uint32_t> vals(*cpus);
    std::iota(vals.begin(), vals.end(), 1u);
    ASSERT_OK(s->update(0, vals));
    std::vector<uint32_t> back(*cpus);
    auto found = s->lookup(0, back);
    ASSERT_OK(found);
    EXPECT_EQ(back, vals);

    // Batches carry value_buffer_size() bytes per key.
    std::vector<uint32_t> rk(4);
    std::vector<uint64_t> rv(4 * *cpus);
    batch_cursor cur;
    uint32_t total = 0;
    while (!cur.done()) {
        auto n = m.lookup_batch(cur, rk.data() + total, rv.data() + total * *cpus, 4 - total);
        ASSERT_OK(n);
        total += *n;
        if (total == 4) {
            break;
        }
    }
    EXPECT_EQ(total, 4u);
    EXPECT_EQ(rv[2 * *cpus], 10u);

    ASSERT_OK(m.pin(fs.path("pcpu")));
    auto pinned = map::from_pin(fs.path("pcpu"), opts);
    ASSERT_OK(pinned);
    EXPECT_EQ(pinned->value_buffer_size(), m.value_buffer_size());
}

TEST_F(MapTest, PercpuHashCrudIterateBatchPin) {
    const map_options opts{.type = BPF_MAP_TYPE_PERCPU_HASH,
                           .key_size = 8,
                           .value_size = 16,
                           .max_entries = 32,
                           .name = "t_pcpu_hash"};
    struct counters {
        uint64_t bytes, packets;
        counters& operator+=(const counters& o) {
            bytes += o.bytes;
            packets += o.packets;
            return *this;
        }
    };
    test_bpffs fs;
    map m = make(opts);
    auto h = percpu_hash<uint64_t, counters>::view(m);
    ASSERT_OK(h);
    const uint32_t cpus = h->cpus();
    EXPECT_FALSE(h->sum(9)->has_value());
    std::vector<counters> v(cpus);
    for (uint32_t c = 0; c < cpus; ++c) {
        v[c] = {100u * (c + 1), c + 1};
    }
    ASSERT_OK(h->update(9, v));
    auto sum = h->sum(9);
    ASSERT_OK(sum);
    ASSERT_TRUE(sum->has_value());
    EXPECT_EQ((*sum)->bytes, 100u * cpus * (cpus + 1) / 2);
    EXPECT_EQ((*sum)->packets, uint64_t(cpus) * (cpus + 1) / 2);
    ASSERT_OK(h->update_all(10, counters{1, 1}));
    auto keys = h->keys();
    ASSERT_OK(keys);
    EXPECT_EQ(std::set<uint64_t>(keys->begin(), keys->end()), (std::set<uint64_t>{9, 10}));

    std::vector<uint64_t> bk{20, 21, 22};
    std::vector<counters> bv(3 * cpus, counters{7, 1});
    ASSERT_OK(m.update_batch(bk.data(), bv.data(), 3));
    EXPECT_EQ(h->sum(21)->value().bytes, 7u * cpus);
    ASSERT_OK(m.erase_batch(bk.data(), 3));
    EXPECT_FALSE(h->sum(21)->has_value());

    auto erased = h->erase(10);
    ASSERT_OK(erased);
    EXPECT_TRUE(*erased);
    ASSERT_OK(m.pin(fs.path("pcpu_hash")));
    auto pinned = map::from_pin(fs.path("pcpu_hash"), opts);
    ASSERT_OK(pinned);
    auto ph = percpu_hash<uint64_t, counters>::view(*pinned);
    ASSERT_OK(ph);
    EXPECT_EQ(ph->sum(9)->value().packets, uint64_t(cpus) * (cpus + 1) / 2);
}

lpm_key key(const char* text) {
    auto k = lpm_key::parse(text);
    EXPECT_TRUE(k) << k.error().message();
    return k ? *k : lpm_key{};
}

TEST_F(MapTest, LpmTrieServesIpv4AndIpv6FromOneTrie) {
    const map_options opts{.type = BPF_MAP_TYPE_LPM_TRIE,
                           .key_size = sizeof(lpm_key),
                           .value_size = 4,
                           .max_entries = 64,
                           .flags = BPF_F_NO_PREALLOC,
                           .name = "t_lpm"};
    test_bpffs fs;
    map m = make(opts);
    auto t = lpm_trie<uint32_t>::view(m);
    ASSERT_OK(t);
    ASSERT_OK(t->update(key("10.0.0.0/8"), 1));
    ASSERT_OK(t->update(key("10.1.0.0/16"), 2));
    ASSERT_OK(t->update(key("2a02:6b8::/32"), 3));
    ASSERT_OK(t->update(key("::/0"), 4));
    EXPECT_EQ(t->lookup(key("10.1.2.3"))->value(), 2u);
    EXPECT_EQ(t->lookup(key("10.2.0.1"))->value(), 1u);
    EXPECT_EQ(t->lookup(key("2a02:6b8:c00::1"))->value(), 3u);
    // Everything else, IPv4 included (it lives under ::ffff:0:0/96), falls to ::/0.
    EXPECT_EQ(t->lookup(key("11.0.0.1"))->value(), 4u);
    ASSERT_OK(t->erase(key("::/0")));
    EXPECT_FALSE(t->lookup(key("11.0.0.1"))->has_value());

    auto keys = t->keys();
    ASSERT_OK(keys);
    std::set<std::string> names;
    for (const auto& k : *keys) {
        names.insert(k.to_string());
    }
    EXPECT_EQ(names, (std::set<std::string>{"10.0.0.0/8", "10.1.0.0/16", "2a02:6b8::/32"}));

    auto erased = t->erase(key("10.1.0.0/16"));
    ASSERT_OK(erased);
    EXPECT_TRUE(*erased);
    EXPECT_EQ(t->lookup(key("10.1.2.3"))->value(), 1u);

    // Batches: the kernel's LPM trie has update and delete batches (generic ones).
    std::vector<lpm_key> bk{key("192.0.2.0/24"), key("198.51.100.0/24"), key("2001:db8::/32")};
    std::vector<uint32_t> bv{7, 8, 9};
    auto written = m.update_batch(bk.data(), bv.data(), 3);
    ASSERT_OK(written);
    EXPECT_EQ(t->lookup(key("198.51.100.9"))->value(), 8u);
    EXPECT_EQ(t->lookup(key("2001:db8::1"))->value(), 9u);
    ASSERT_OK(m.erase_batch(bk.data(), 3));
    EXPECT_FALSE(t->lookup(key("2001:db8::1"))->has_value());

    ASSERT_OK(m.pin(fs.path("lpm")));
    auto pinned = map::from_pin(fs.path("lpm"), opts);
    ASSERT_OK(pinned);
    EXPECT_EQ(lpm_trie<uint32_t>::view(*pinned)->lookup(key("10.9.9.9"))->value(), 1u);
}

TEST_F(MapTest, RingbufCreatesPinsAndRefusesElementAccessClearly) {
    const uint32_t size = uint32_t(::sysconf(_SC_PAGESIZE)) * 4;
    const map_options opts{.type = BPF_MAP_TYPE_RINGBUF, .max_entries = size, .name = "t_ring"};
    test_bpffs fs;
    map m = make(opts);
    ASSERT_GE(m.fd(), 3);
    ASSERT_OK(m.pin(fs.path("ring")));
    auto pinned = map::from_pin(fs.path("ring"), opts);
    ASSERT_OK(pinned);
    EXPECT_EQ(pinned->max_entries(), size);
    uint32_t k = 0;
    uint64_t v = 0;
    auto r = pinned->lookup(&k, &v);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().op(), "BPF_MAP_LOOKUP_ELEM");
    // A ring buffer's size must be a power-of-2 multiple of the page size.
    auto bad = map::create({.type = BPF_MAP_TYPE_RINGBUF, .max_entries = size + 1, .name = "bad"});
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().code(), EINVAL);
    EXPECT_NE(bad.error().message().find("map bad"), std::string::npos);
}

TEST_F(MapTest, FreezeMakesTheMapReadOnlyForUserSpace) {
    map m = make({.type = BPF_MAP_TYPE_ARRAY,
                  .key_size = 4,
                  .value_size = 4,
                  .max_entries = 1,
                  .name = "t_frozen"});
    auto a = array<uint32_t>::view(m);
    ASSERT_OK(a);
    ASSERT_OK(a->update(0, 9));
    ASSERT_OK(m.freeze());
    auto w = a->update(0, 10);
    ASSERT_FALSE(w);
    EXPECT_EQ(w.error().code(), EPERM);
    EXPECT_EQ(*a->lookup(0), 9u);
}

TEST_F(MapTest, MapsAreFoundById) {
    map m = make({.type = BPF_MAP_TYPE_HASH,
                  .key_size = 4,
                  .value_size = 4,
                  .max_entries = 1,
                  .name = "t_by_id"});
    auto id = m.id();
    ASSERT_OK(id);
    auto other = map::from_id(*id);
    ASSERT_OK(other);
    EXPECT_EQ(other->name(), "t_by_id");
    EXPECT_EQ(other->type(), uint32_t(BPF_MAP_TYPE_HASH));
}

}  // namespace
}  // namespace ebpf
