import sys, re, collections
f = open(sys.argv[1]); target = sys.argv[2]; n = int(sys.argv[3])
names = {}; cur = None; cfn = None; by = collections.Counter(); want = False
def name(tok):
    m = re.match(r'\((\d+)\)(?: (.*))?', tok)
    if m:
        if m.group(2): names[m.group(1)] = m.group(2)
        return names.get(m.group(1), tok)
    return tok
for line in f:
    line = line.rstrip('\n')
    if line.startswith('fn='): cur = name(line[3:]); continue
    if line.startswith('cfn='): cfn = name(line[4:]); continue
    if line.startswith('calls='): want = True; continue
    if want and line and (line[0].isdigit() or line[0] in '+-*'):
        want = False
        if target in (cfn or ''):
            by[cur] += int(line.split()[1])
for k, v in by.most_common(20): print(f"{v/n:8.0f} {k[:160]}")
