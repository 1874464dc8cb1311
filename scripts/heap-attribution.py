"""Where a heap profile's peak went, by the code that asked for it.

    heaptrack -o /tmp/ht ./target/release/chat-server        # then load it, then stop it
    heaptrack_print -f /tmp/ht.zst --flamegraph-cost-type peak -F /tmp/stacks.txt
    python3 scripts/heap-attribution.py /tmp/stacks.txt 5 20  # frames per key, rows

Each stack's peak bytes are attributed to its innermost frames that are not the allocator
itself (alloc, Vec growth, Box::new, ...), so a row reads as "who allocated this".
"""
import sys, re, collections
# attribute each stack's peak bytes to the innermost "interesting" frame
skip = re.compile(r'^(alloc|alloc_impl|alloc_impl_runtime|allocate|box_new_uninit|new<>|new|with_capacity<>|with_capacity|grow|grow_impl|grow_impl_runtime|finish_grow<>|reserve<>|reserve|try_reserve|do_reserve_and_handle<>|malloc|realloc|calloc|clone<>|clone|from<>|into<>|to_vec<>|to_owned<>|collect<>|extend<>|push<>|insert<>|spec_extend<>|from_iter<>|_R.*alloc.*|_R.*rdl_alloc.*|0x[0-9a-f]+.*)( \(.*\))?$')
tot = collections.Counter()
paths = collections.Counter()
for line in open(sys.argv[1]):
    line=line.rstrip('\n')
    if not line: continue
    stack, _, n = line.rpartition(' ')
    try: n=int(n)
    except: continue
    frames = stack.split(';')
    # innermost-first
    rf = frames[::-1]
    picked=[]
    for f in rf:
        name=f
        if skip.match(name): continue
        picked.append(name)
        if len(picked)>=int(sys.argv[2]): break
    key=' <- '.join(picked)
    tot[key]+=n
total=sum(tot.values())
print("total", total)
for k,v in tot.most_common(int(sys.argv[3])):
    print(f"{v/1024:10.1f} KiB  {k[:400]}")
