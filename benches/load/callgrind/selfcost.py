import sys, re, collections
f = open(sys.argv[1]); n = int(sys.argv[2]) if len(sys.argv) > 2 else 1
names = {}; cur = None; self_ = collections.Counter(); skip_next = False
def name(tok):
    m = re.match(r'\((\d+)\)(?: (.*))?', tok)
    if m:
        if m.group(2): names[m.group(1)] = m.group(2)
        return names.get(m.group(1), tok)
    return tok
for line in f:
    line = line.rstrip('\n')
    if line.startswith('fn='):
        cur = name(line[3:]); continue
    if line.startswith(('cfn=', 'cfi=', 'cfl=')):
        if line.startswith('cfn='): name(line[4:])
        continue
    if line.startswith('calls='):
        skip_next = True; continue
    if line and (line[0].isdigit() or line[0] in '+-*'):
        parts = line.split()
        if skip_next:
            skip_next = False; continue
        if len(parts) >= 2 and cur:
            try: self_[cur] += int(parts[1])
            except ValueError: pass
        continue
tot = sum(self_.values())
print("total", tot, "per req", tot / n)
for k, v in self_.most_common(45):
    print(f"{v/n:8.0f} {k[:150]}")
