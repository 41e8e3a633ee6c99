#!/usr/bin/python3
"""mongo-standin: a small in-memory MongoDB stand-in for ldprof's tests.

It speaks the MongoDB wire protocol through mockupdb (Debian package
python3-mockupdb; run it with /usr/bin/python3) and keeps documents in memory,
per database and collection, in insertion order.  Collections are plain lists
scanned linearly: this is for functional tests, not for benchmarks.

Every request goes to one catch-all handler.  mockupdb runs handlers one at a
time under its server lock, so each command (e.g. a findAndModify claim) is
atomic with respect to all other connections.  Whatever is not implemented is
answered with an error naming it ({ok: 0, code, errmsg, codeName}, or a
writeErrors entry for a write statement, as MongoDB does); it is never
silently ignored, and a handler exception never kills the connection.

Usage: standin.py [--host 127.0.0.1] [--port 0] [--port-file PATH] [--verbose]
"""

import argparse
import copy
import datetime
import decimal
import functools
import os
import re
import signal
import sys
import threading
import traceback
import uuid
from collections.abc import Mapping

import bson
from bson.code import Code
from bson.codec_options import CodecOptions
from bson.decimal128 import Decimal128
from bson.int64 import Int64
from bson.max_key import MaxKey
from bson.min_key import MinKey
from bson.objectid import ObjectId
from bson.raw_bson import RawBSONDocument
from bson.regex import Regex
from bson.timestamp import Timestamp
import mockupdb

MAX_WIRE_VERSION = 13          # MongoDB 5.0; libmongoc 1.23 accepts 6..17
NOT_SUPPORTED = ' (not supported by mongo-standin)'


# --------------------------------------------------------------------------
# Errors

ERROR_NAMES = {
    1: 'InternalError', 2: 'BadValue', 9: 'FailedToParse', 14: 'TypeMismatch',
    20: 'IllegalOperation', 26: 'NamespaceNotFound', 28: 'PathNotViable',
    40: 'ConflictingUpdateOperators', 43: 'CursorNotFound',
    48: 'NamespaceExists', 59: 'CommandNotFound', 66: 'ImmutableField',
    73: 'InvalidNamespace', 11000: 'DuplicateKey',
}

class CommandError(Exception):
    """An error reported to the client as {ok: 0, code, errmsg, codeName}."""

    def __init__(self, code, errmsg, **extra):
        super().__init__(errmsg)
        self.code, self.errmsg, self.extra = code, errmsg, extra

    def reply(self):
        name = ERROR_NAMES.get(self.code, 'Location%d' % self.code)
        return dict(ok=0, errmsg=self.errmsg, code=self.code, codeName=name,
                    **self.extra)

    def write_error(self, index):
        """The same error as an entry of a write command's writeErrors."""
        return dict(index=index, code=self.code, **self.extra,
                    errmsg=self.errmsg)

def bad_value(msg):
    return CommandError(2, msg)

def failed_to_parse(msg):
    return CommandError(9, msg)

def int_arg(cmd, name):
    """An integral numeric argument, default 0 (bools are not numbers)."""
    val = cmd.get(name, 0)
    if isinstance(val, bool) or not isinstance(val, (int, float)):
        raise CommandError(14, "'%s' must be a number" % name)
    return int(val)

def doc_arg(cmd, name):
    """An object argument, default {}."""
    val = cmd.get(name)
    if val is not None and not isinstance(val, Mapping):
        raise CommandError(14, "'%s' must be an object" % name)
    return val or {}


# --------------------------------------------------------------------------
# BSON values: type order, comparison, hashing, dotted paths

class _Missing:
    """An absent field (compares like null, as in MongoDB)."""

    def __repr__(self):
        return 'MISSING'

MISSING = _Missing()

# MongoDB's canonical type order for comparison and sorting.
(R_MINKEY, R_NULL, R_NUMBER, R_STRING, R_OBJECT, R_ARRAY, R_BINARY, R_OID,
 R_BOOL, R_DATE, R_TIMESTAMP, R_REGEX, R_CODE, R_MAXKEY) = range(14)
_RANKS = [  # first match wins: bool before int, Code before str
    (bool, R_BOOL), ((int, float, Decimal128), R_NUMBER), (Code, R_CODE),
    (str, R_STRING), (Mapping, R_OBJECT), (list, R_ARRAY),
    ((bytes, uuid.UUID), R_BINARY), (ObjectId, R_OID),
    (datetime.datetime, R_DATE), (Timestamp, R_TIMESTAMP),
    ((Regex, re.Pattern), R_REGEX), (MinKey, R_MINKEY), (MaxKey, R_MAXKEY)]

def type_rank(v):
    if v is None or v is MISSING:
        return R_NULL
    for types, rank in _RANKS:
        if isinstance(v, types):
            return rank
    raise bad_value('unsupported BSON value type %s' % type(v).__name__)

def _num(v):
    return v.to_decimal() if isinstance(v, Decimal128) else v

def _plain_cmp(a, b):
    return (a > b) - (a < b)

def _scalar_key(v, rank):
    """A comparable, hashable key for a value that is not a number/doc/array."""
    if rank == R_BINARY:
        if isinstance(v, uuid.UUID):
            return (16, 4, v.bytes)
        return (len(v), getattr(v, 'subtype', 0), bytes(v))
    if rank == R_OID:
        return v.binary
    if rank == R_TIMESTAMP:
        return (v.time, v.inc)
    if rank == R_REGEX:
        return (v.pattern, str(v.flags))
    if rank in (R_NULL, R_MINKEY, R_MAXKEY):
        return 0
    return v                                    # str, bool, datetime, code

def cmp_values(a, b):
    """Compare two BSON values like MongoDB: type order first, then value."""
    ra, rb = type_rank(a), type_rank(b)
    if ra != rb:
        return _plain_cmp(ra, rb)
    if ra == R_NUMBER:                          # int, long, double, decimal
        a, b = _num(a), _num(b)
        if a != a or b != b:                    # NaN sorts below all numbers
            return _plain_cmp(b != b, a != a)
        return _plain_cmp(a, b)
    if ra == R_OBJECT:                          # pairwise: type, name, value
        ia, ib = list(a.items()), list(b.items())
        for (ka, va), (kb, vb) in zip(ia, ib):
            c = (_plain_cmp(type_rank(va), type_rank(vb))
                 or _plain_cmp(ka, kb) or cmp_values(va, vb))
            if c:
                return c
        return _plain_cmp(len(ia), len(ib))
    if ra == R_ARRAY:
        for va, vb in zip(a, b):
            c = cmp_values(va, vb)
            if c:
                return c
        return _plain_cmp(len(a), len(b))
    return _plain_cmp(_scalar_key(a, ra), _scalar_key(b, rb))

def values_equal(a, b):
    return cmp_values(a, b) == 0

def hash_key(v):
    """A hashable key; BSON-equal values (1, 1.0, Int64(1)) get equal keys."""
    r = type_rank(v)
    if r == R_NUMBER:
        v = _num(v)
        return (r, 'NaN' if v != v else v)      # Python: hash(1) == hash(1.0)
    if r == R_OBJECT:
        return (r, tuple((k, hash_key(x)) for k, x in v.items()))
    if r == R_ARRAY:
        return (r, tuple(hash_key(x) for x in v))
    return (r, _scalar_key(v, r))

def resolve(value, parts):
    """Yield the values a dotted path reaches, MongoDB style (query paths).

    A numeric part indexes an array; any other part is looked up in each
    document element of an array.  An absent field yields MISSING.
    """
    if not parts:
        yield value
        return
    head, rest = parts[0], parts[1:]
    if isinstance(value, Mapping):
        yield from resolve(value[head], rest) if head in value else [MISSING]
    elif isinstance(value, list) and head.isdigit():
        idx = int(head)
        yield from resolve(value[idx], rest) if idx < len(value) else [MISSING]
    elif isinstance(value, list):
        elems = [e for e in value if isinstance(e, Mapping)]
        for elem in elems:
            yield from resolve(elem, parts)
        if not elems:
            yield MISSING
    else:
        yield MISSING

def get_field(doc, path):
    """Aggregation path value ("$a.b"): arrays of documents map to lists."""
    value = doc
    for part in path.split('.'):
        if isinstance(value, Mapping):
            value = value.get(part, MISSING)
        elif isinstance(value, list):
            value = [x for x in (get_field(e, part) for e in value
                                 if isinstance(e, Mapping)) if x is not MISSING]
        else:
            return MISSING
    return value


# --------------------------------------------------------------------------
# Query matcher.  compile_filter(spec) validates the whole filter up front (an
# unsupported operator fails even on an empty collection) and returns a
# predicate doc -> bool.

def is_operator_doc(v):
    return isinstance(v, Mapping) and bool(v) and next(iter(v)).startswith('$')

def _reject_regex(v, where):
    if isinstance(v, (Regex, re.Pattern)):
        raise bad_value('unknown operator: $regex (regular expression in %s '
                        'not supported by mongo-standin)' % where)

def compile_filter(spec):
    if not isinstance(spec, Mapping):
        raise bad_value('query filter must be an object')
    preds = []
    for key, val in spec.items():
        if key in ('$and', '$or', '$nor'):
            if not isinstance(val, list) or not val or \
                    not all(isinstance(s, Mapping) for s in val):
                raise bad_value('%s must be a nonempty array of objects' % key)
            subs = [compile_filter(s) for s in val]
            combine = {'$and': all, '$or': any,
                       '$nor': lambda it: not any(it)}[key]
            preds.append(lambda d, s=subs, c=combine: c(p(d) for p in s))
        elif key == '$comment':
            continue
        elif key.startswith('$'):
            raise bad_value('unknown top level operator: %s' % key
                            + NOT_SUPPORTED)
        elif is_operator_doc(val):
            parts = key.split('.')
            preds.extend(_compile_operator(parts, op, arg)
                         for op, arg in val.items())
        else:
            _reject_regex(val, "field '%s'" % key)
            preds.append(_eq_pred(key.split('.'), val))
    return lambda doc: all(p(doc) for p in preds)

def _candidates(doc, parts):
    """Values to test at a path: each value reached, plus array elements."""
    out = []
    for v in resolve(doc, parts):
        out.append(v)
        if isinstance(v, list):
            out.extend(v)
    return out

def _eq_pred(parts, operand):
    if operand is None:                         # {a: null} matches missing
        return lambda doc: any(c is None or c is MISSING
                               for c in _candidates(doc, parts))
    return lambda doc: any(c is not MISSING and values_equal(c, operand)
                           for c in _candidates(doc, parts))

_COMPARISONS = {'$gt': lambda c: c > 0, '$gte': lambda c: c >= 0,
                '$lt': lambda c: c < 0, '$lte': lambda c: c <= 0}

def _compile_operator(parts, op, arg):
    if op in ('$eq', '$ne'):
        _reject_regex(arg, op)
        pred = _eq_pred(parts, arg)
        return pred if op == '$eq' else (lambda doc: not pred(doc))
    if op in _COMPARISONS:
        test, rank = _COMPARISONS[op], type_rank(arg)
        # Type bracketing: only values of the operand's type can match.
        return lambda doc: any(type_rank(c) == rank and test(cmp_values(c, arg))
                               for c in _candidates(doc, parts))
    if op in ('$in', '$nin'):
        if not isinstance(arg, list):
            raise bad_value('%s needs an array' % op)
        for elem in arg:
            _reject_regex(elem, op)
            if is_operator_doc(elem):
                raise bad_value('cannot nest $ under %s' % op)
        preds = [_eq_pred(parts, elem) for elem in arg]
        return lambda doc: any(p(doc) for p in preds) == (op == '$in')
    if op == '$exists':
        return lambda doc: bool(arg) == any(v is not MISSING
                                            for v in resolve(doc, parts))
    if op == '$not':
        _reject_regex(arg, op)
        if not is_operator_doc(arg):
            raise bad_value('$not needs a non-empty operator document')
        preds = [_compile_operator(parts, o, a) for o, a in arg.items()]
        return lambda doc: not all(p(doc) for p in preds)
    raise bad_value('unknown operator: %s' % op + NOT_SUPPORTED)


# --------------------------------------------------------------------------
# Sorting and projection

def compile_sort(spec):
    """Return a function sorting a list of documents by spec (stable)."""
    if not isinstance(spec, Mapping):
        raise bad_value('sort must be an object')
    keys = []
    for path, direction in spec.items():
        if isinstance(direction, Mapping):
            raise bad_value('sort by %r ($meta)' % dict(direction)
                            + NOT_SUPPORTED)
        if isinstance(direction, bool) or direction not in (1, -1):
            raise bad_value('$sort key ordering must be 1 (for ascending) '
                            'or -1 (for descending)')
        keys.append((path.split('.'), int(direction)))
    by_value = functools.cmp_to_key(cmp_values)

    def sort_value(doc, parts, direction):
        # Missing sorts as null; an array by its smallest (ascending) or
        # largest (descending) element.
        vals = []
        for v in resolve(doc, parts):
            vals.extend((v or [None]) if isinstance(v, list) else
                        [None if v is MISSING else v])
        return (min if direction == 1 else max)(vals, key=by_value)

    def compare(a, b):
        for va, vb, (_, direction) in zip(a[0], b[0], keys):
            c = cmp_values(va, vb)
            if c:
                return c * direction
        return 0

    def sort(docs):
        if not keys:
            return list(docs)
        decorated = [([sort_value(d, p, dr) for p, dr in keys], d)
                     for d in docs]
        decorated.sort(key=functools.cmp_to_key(compare))
        return [d for _, d in decorated]
    return sort

def compile_projection(spec, allow_paths=False):
    """Return doc -> projected doc for an inclusion or exclusion projection.

    With allow_paths (the $project stage) a value may also be "$field.path".
    """
    if not isinstance(spec, Mapping):
        raise bad_value('projection must be an object')
    if not spec:
        return lambda doc: doc
    include_id, fields, computed = True, {}, {}
    for path, val in spec.items():
        if path.startswith('$'):
            raise bad_value('projection field %s' % path + NOT_SUPPORTED)
        if allow_paths and isinstance(val, str) and val.startswith('$') \
                and not val.startswith('$$'):
            computed[path] = val[1:]
        elif not isinstance(val, (bool, int, float)):
            what = next(iter(val)) if is_operator_doc(val) else repr(val)
            raise bad_value('projection %s for %s' % (what, path)
                            + NOT_SUPPORTED)
        elif path == '_id':
            include_id = bool(val)
        else:
            fields[path] = bool(val)
    modes = set(fields.values()) | ({True} if computed else set())
    if len(modes) > 1:
        raise bad_value('Cannot mix inclusion and exclusion in a projection')
    # {_id: 1} alone is an inclusion projection too (only _id is returned).
    inclusion = modes == {True} or (not modes and include_id and '_id' in spec)
    tree = {}                                   # {"a.b": 1} -> {a: {b: {}}}
    for path in sorted(fields, key=len):
        node = tree
        for part in path.split('.'):
            if part in node and not node[part]:     # a prefix is a leaf
                raise bad_value('Path collision at %s' % path)
            node = node.setdefault(part, {})

    def include(value, node):
        if isinstance(value, list):
            return [include(e, node) for e in value if isinstance(e, Mapping)]
        return {k: (v if not node[k] else include(v, node[k]))
                for k, v in value.items() if k in node and
                (not node[k] or isinstance(v, (Mapping, list)))}

    def exclude(value, node):
        if isinstance(value, list):
            return [exclude(e, node) if isinstance(e, Mapping) else e
                    for e in value]
        return {k: (exclude(v, node[k]) if k in node else v)
                for k, v in value.items() if k not in node or
                (node[k] and isinstance(v, (Mapping, list)))}

    def project(doc):
        out = {'_id': doc['_id']} if include_id and '_id' in doc else {}
        body = {k: v for k, v in doc.items() if k != '_id'}
        out.update(include(body, tree) if inclusion else exclude(body, tree))
        for name, path in computed.items():
            val = get_field(doc, path)
            if val is not MISSING:
                out[name] = val
        return out
    return project


# --------------------------------------------------------------------------
# Update applier.  compile_update(spec) validates and returns an Update whose
# apply(doc, is_insert) modifies doc in place.

UPDATE_OPERATORS = ('$set', '$unset', '$inc', '$setOnInsert')

def _not_viable(parts, i):
    raise CommandError(28, "Cannot create field '%s' in element {%s: ...}"
                       % (parts[i], '.'.join(parts[:i])))

def _set_path(doc, parts, value):
    node = doc
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list) and part.isdigit():
            idx = int(part)
            node.extend([None] * (idx + 1 - len(node)))  # MongoDB pads nulls
            if last:
                node[idx] = value
                return
            if node[idx] is None:
                node[idx] = {}
            node = node[idx]
        elif isinstance(node, Mapping):
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
        else:
            _not_viable(parts, i)
        if not isinstance(node, (Mapping, list)):
            _not_viable(parts, i + 1)

def _get_path(doc, parts):
    node = doc
    for part in parts:
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node

def _unset_path(doc, parts):
    parent, last = _get_path(doc, parts[:-1]), parts[-1]
    if isinstance(parent, Mapping):
        parent.pop(last, None)
    elif isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        parent[int(last)] = None                # MongoDB leaves a null

def is_number(v):
    return isinstance(v, (int, float, Decimal128)) and not isinstance(v, bool)

def add_numbers(a, b):
    """a + b with MongoDB's type promotion (int -> long -> double/decimal)."""
    if isinstance(a, Decimal128) or isinstance(b, Decimal128):
        return Decimal128(decimal.Decimal(str(_num(a)))
                          + decimal.Decimal(str(_num(b))))
    if isinstance(a, float) or isinstance(b, float):
        return float(a) + float(b)
    total = int(a) + int(b)
    if not -2**63 <= total < 2**63:
        raise bad_value('integer overflow adding %r and %r' % (a, b))
    if isinstance(a, Int64) or isinstance(b, Int64) or \
            not -2**31 <= total < 2**31:
        return Int64(total)
    return total

def _immutable_id():
    return CommandError(66, "Performing an update on the path '_id' would "
                        "modify the immutable field '_id'")

class Update:
    def __init__(self, replacement=None, ops=()):
        self.replacement = replacement          # a document, or None
        self.ops = ops                          # [(op, parts, value)]

    def apply(self, doc, is_insert=False):
        old_id = doc.get('_id', MISSING)
        if self.replacement is not None:        # keep _id, replace the rest
            new_id = self.replacement.get('_id', old_id)
            if old_id is not MISSING and not values_equal(old_id, new_id):
                raise _immutable_id()
            doc.clear()
            if new_id is not MISSING:
                doc['_id'] = new_id
            doc.update(copy.deepcopy({k: v for k, v in
                                      self.replacement.items() if k != '_id'}))
            return
        for op, parts, value in self.ops:
            if op == '$set' or (op == '$setOnInsert' and is_insert):
                _set_path(doc, parts, copy.deepcopy(value))
            elif op == '$unset':
                _unset_path(doc, parts)
            elif op == '$inc':
                current = _get_path(doc, parts)
                if current is not MISSING and not is_number(current):
                    raise CommandError(
                        14, "Cannot apply $inc to a value of non-numeric type."
                        " {_id: %r} has the field '%s' of non-numeric type %s"
                        % (doc.get('_id'), parts[-1], type(current).__name__))
                _set_path(doc, parts, value if current is MISSING
                          else add_numbers(current, value))
        if old_id is not MISSING and \
                not values_equal(doc.get('_id', MISSING), old_id):
            raise _immutable_id()

def compile_update(spec):
    if isinstance(spec, list):
        raise failed_to_parse('pipeline-style updates' + NOT_SUPPORTED)
    if not isinstance(spec, Mapping):
        raise failed_to_parse('update must be an object')
    dollar = [k.startswith('$') for k in spec]
    if not any(dollar):
        return Update(replacement=spec)
    if not all(dollar):
        raise failed_to_parse('update document mixes operators and fields')
    ops = []
    for op, fields in spec.items():
        if op not in UPDATE_OPERATORS:
            raise failed_to_parse('Unknown modifier: %s' % op + NOT_SUPPORTED)
        if not isinstance(fields, Mapping):
            raise failed_to_parse('Modifiers operate on fields but we found '
                                  'type %s instead' % type(fields).__name__)
        for path, value in fields.items():
            if not path or '' in path.split('.'):
                raise bad_value("empty field name in update path '%s'" % path)
            if op == '$inc' and not is_number(value):
                raise CommandError(14, 'Cannot increment with non-numeric '
                                   'argument: {%s: %r}' % (path, value))
            ops.append((op, path.split('.'), value))
    for i, (_, a, _) in enumerate(ops):         # no path may overlap another
        for (_, b, _) in ops[i + 1:]:
            if a[:len(b)] == b or b[:len(a)] == a:
                raise CommandError(40, "Updating the path '%s' would create a"
                                   " conflict at '%s'" % ('.'.join(b),
                                                          '.'.join(a)))
    ops.sort(key=lambda o: o[1])                # MongoDB 5.0: lexicographic
    return Update(ops=ops)

def upsert_seed(query):
    """The document an upsert starts from: the query's equality fields."""
    doc = {}

    def collect(spec):
        for key, val in spec.items():
            if key == '$and':
                for sub in val:
                    collect(sub)
            elif not key.startswith('$') and not is_operator_doc(val):
                _set_path(doc, key.split('.'), copy.deepcopy(val))
            elif not key.startswith('$') and '$eq' in val:
                _set_path(doc, key.split('.'), copy.deepcopy(val['$eq']))
    collect(query)
    return doc


# --------------------------------------------------------------------------
# Aggregation pipeline.  compile_pipeline(stages) -> function(docs) -> docs

def compile_expression(expr):
    """Field paths ("$a.b"), documents and arrays of expressions, literals."""
    if isinstance(expr, str) and expr.startswith('$$'):
        raise bad_value('variable %s' % expr + NOT_SUPPORTED)
    if isinstance(expr, str) and expr.startswith('$'):
        return lambda doc: get_field(doc, expr[1:])
    if is_operator_doc(expr):
        raise bad_value('expression operator %s' % next(iter(expr))
                        + NOT_SUPPORTED)
    if isinstance(expr, Mapping):
        subs = {k: compile_expression(v) for k, v in expr.items()}
        return lambda doc: {k: v for k, v in ((k, f(doc)) for k, f in
                                              subs.items()) if v is not MISSING}
    if isinstance(expr, list):
        subs = [compile_expression(v) for v in expr]
        return lambda doc: [None if v is MISSING else v
                            for v in (f(doc) for f in subs)]
    return lambda doc: expr

def _accumulate(op, vals):
    """The result of a $group accumulator over one group's values."""
    if op in ('$first', '$last'):
        v = vals[0] if op == '$first' else vals[-1]
        return None if v is MISSING else v
    if op in ('$sum', '$avg'):                  # non-numbers are ignored
        nums = [v for v in vals if is_number(v)]
        total = functools.reduce(add_numbers, nums, 0)
        if op == '$sum':
            return total
        return float(_num(total)) / len(nums) if nums else None
    present = [v for v in vals if v is not MISSING and v is not None]
    pick = min if op == '$min' else max
    return pick(present, key=functools.cmp_to_key(cmp_values)) \
        if present else None

def _stage_group(spec):
    if not isinstance(spec, Mapping) or '_id' not in spec:
        raise failed_to_parse('a group specification must include an _id')
    key_expr = compile_expression(spec['_id'])
    accs = []
    for name, acc in spec.items():
        if name == '_id':
            continue
        if not isinstance(acc, Mapping) or len(acc) != 1:
            raise failed_to_parse("The field '%s' must be an accumulator "
                                  "object" % name)
        (op, arg), = acc.items()
        if op not in ('$sum', '$avg', '$min', '$max', '$first', '$last'):
            raise failed_to_parse("unknown group operator '%s'" % op
                                  + NOT_SUPPORTED)
        accs.append((name, op, compile_expression(arg)))

    def group(docs):
        groups = {}                             # hash key -> (key, [docs])
        for doc in docs:
            key = key_expr(doc)
            key = None if key is MISSING else key
            groups.setdefault(hash_key(key), (key, []))[1].append(doc)
        return [dict([('_id', key)] + [(name, _accumulate(op, [f(d) for d
                                                               in members]))
                                       for name, op, f in accs])
                for key, members in groups.values()]
    return group

def _count_arg(stage, arg, minimum):
    if isinstance(arg, bool) or not isinstance(arg, (int, float)) \
            or arg != int(arg) or arg < minimum:
        raise bad_value('invalid argument to %s stage: %r' % (stage, arg))
    return int(arg)

def compile_pipeline(stages):
    if not isinstance(stages, list):
        raise failed_to_parse("'pipeline' must be an array")
    funcs = []
    for stage in stages:
        if not isinstance(stage, Mapping) or len(stage) != 1:
            raise failed_to_parse('A pipeline stage specification object '
                                  'must contain exactly one field.')
        (name, arg), = stage.items()
        if name == '$match':
            pred = compile_filter(arg)
            funcs.append(lambda docs, p=pred: [d for d in docs if p(d)])
        elif name == '$sort':
            funcs.append(compile_sort(arg))
        elif name == '$limit':
            n = _count_arg(name, arg, 1)
            funcs.append(lambda docs, n=n: docs[:n])
        elif name == '$skip':
            n = _count_arg(name, arg, 0)
            funcs.append(lambda docs, n=n: docs[n:])
        elif name == '$group':
            funcs.append(_stage_group(arg))
        elif name == '$count':
            if not isinstance(arg, str) or not arg or arg.startswith('$') \
                    or '.' in arg:
                raise bad_value('the $count field name must be a non-empty '
                                'string without $ or .')
            funcs.append(lambda docs, f=arg: [{f: len(docs)}] if docs else [])
        elif name == '$project':
            if not isinstance(arg, Mapping) or not arg:
                raise bad_value('$project requires at least one output field')
            proj = compile_projection(arg, allow_paths=True)
            funcs.append(lambda docs, p=proj: [p(d) for d in docs])
        else:
            raise failed_to_parse("Unrecognized pipeline stage name: '%s'"
                                  % name + NOT_SUPPORTED)
    return lambda docs: functools.reduce(lambda acc, f: f(acc), funcs,
                                         list(docs))


# --------------------------------------------------------------------------
# Storage

class Collection:
    """Documents in insertion order, plus an index on _id for uniqueness."""

    def __init__(self, ns):
        self.ns, self.docs, self.by_id = ns, [], {}

    def insert(self, doc):
        """Store doc (with _id first, generated if absent); return it."""
        doc = dict([('_id', doc.get('_id', MISSING))] +
                   [(k, v) for k, v in doc.items() if k != '_id'])
        if doc['_id'] is MISSING:
            doc['_id'] = ObjectId()
        if isinstance(doc['_id'], (list, Regex, re.Pattern)):
            raise bad_value("can't use a %s for _id"
                            % type(doc['_id']).__name__)
        key = hash_key(doc['_id'])
        if key in self.by_id:
            raise CommandError(
                11000, 'E11000 duplicate key error collection: %s index: _id_ '
                'dup key: { _id: %r }' % (self.ns, doc['_id']),
                keyPattern={'_id': 1}, keyValue={'_id': doc['_id']})
        self.docs.append(doc)
        self.by_id[key] = doc
        return doc

    def remove(self, victims):
        gone = {id(d) for d in victims}
        self.docs = [d for d in self.docs if id(d) not in gone]
        for d in victims:
            del self.by_id[hash_key(d['_id'])]

    def find(self, pred, sort=None):
        docs = [d for d in self.docs if pred(d)]
        return sort(docs) if sort else docs

class Store:
    def __init__(self):
        self.dbs = {}                           # db -> {name: Collection}

    def get(self, db, name, create=False):
        if create:
            return self.dbs.setdefault(db, {}).setdefault(
                name, Collection('%s.%s' % (db, name)))
        return self.dbs.get(db, {}).get(name)

    def find(self, db, name, pred, sort=None):
        coll = self.get(db, name)
        return coll.find(pred, sort) if coll else []

    def drop(self, db, name):
        colls = self.dbs.get(db, {})
        if name not in colls:
            return False
        del colls[name]
        if not colls:
            del self.dbs[db]
        return True

def apply_update(store, db, name, query, update, multi, upsert, sort=None):
    """The update statement shared by update and findAndModify.

    Returns (matched, modified, upserted _id or MISSING, [(old, new)]).
    """
    pred, upd = compile_filter(query), compile_update(update)
    targets = store.find(db, name, pred, sort)
    if not multi:
        targets = targets[:1]
    touched, modified = [], 0
    for doc in targets:
        new = copy.deepcopy(doc)
        upd.apply(new)                          # may raise: doc untouched
        touched.append((copy.deepcopy(doc), new))
        if bson.encode(new) != bson.encode(doc):    # exact, typed compare
            modified += 1
            doc.clear()                         # in place: keeps its position
            doc.update(new)
    if targets or not upsert:
        return len(targets), modified, MISSING, touched
    seed = query if upd.replacement is None else \
        {'_id': query['_id']} if '_id' in query else {}
    new = upsert_seed(seed)
    upd.apply(new, is_insert=True)
    new = store.get(db, name, create=True).insert(new)
    return 0, 0, new['_id'], [(None, new)]


# --------------------------------------------------------------------------
# Commands: cmd_x(store, db, cmd) returns the reply document or raises
# CommandError.

def coll_name(cmd):
    val = next(iter(cmd.values()))
    if not isinstance(val, str) or not val:
        raise CommandError(73, 'collection name has invalid type %s (only '
                           'named collections are supported by mongo-standin)'
                           % type(val).__name__)
    return val

def reject_options(cmd, names):
    for name in names:
        if name in cmd:
            raise bad_value("option '%s'" % name + NOT_SUPPORTED)

def cursor_reply(ns, docs):
    return {'cursor': {'firstBatch': docs, 'id': Int64(0), 'ns': ns}, 'ok': 1}

def cmd_hello(store, db, cmd):
    # No logicalSessionTimeoutMinutes: drivers then use no sessions.
    return {'helloOk': True, 'ismaster': True, 'isWritablePrimary': True,
            'maxBsonObjectSize': 16777216, 'maxMessageSizeBytes': 48000000,
            'maxWriteBatchSize': 100000,
            'localTime': datetime.datetime.now(datetime.timezone.utc),
            'minWireVersion': 0, 'maxWireVersion': MAX_WIRE_VERSION,
            'readOnly': False, 'ok': 1}

def cmd_build_info(store, db, cmd):
    # mongoStandin lets tests tell the stand-in from a real mongod.
    return {'version': '5.0.0-mongo-standin', 'gitVersion': 'mongo-standin',
            'versionArray': [5, 0, 0, 0], 'bits': 64,
            'maxBsonObjectSize': 16777216, 'mongoStandin': True, 'ok': 1}

def run_statements(cmd, field, run_one):
    """Run a write command's statements: errors become writeErrors entries;
    ordered (the default) stops at the first one."""
    stmts = cmd.get(field)
    if not isinstance(stmts, list):
        raise failed_to_parse("'%s' must be an array" % field)
    errors = []
    for i, stmt in enumerate(stmts):
        try:
            if not isinstance(stmt, Mapping):
                raise bad_value("'%s' entries must be objects" % field)
            run_one(i, stmt)
        except CommandError as e:
            errors.append(e.write_error(i))
            if cmd.get('ordered', True):
                break
    return {'writeErrors': errors} if errors else {}

def cmd_insert(store, db, cmd):
    coll = store.get(db, coll_name(cmd), create=True)
    inserted = []

    def insert_one(i, doc):
        bad = [k for k in doc if k.startswith('$')]
        if bad:
            raise bad_value("Document can't have $ prefixed field names: "
                            + bad[0])
        inserted.append(coll.insert(doc))
    errors = run_statements(cmd, 'documents', insert_one)
    return dict(n=len(inserted), ok=1, **errors)

def cmd_update(store, db, cmd):
    name, reply, upserted = coll_name(cmd), {'n': 0, 'nModified': 0}, []

    def update_one(i, st):
        reject_options(st, ('arrayFilters', 'collation', 'c'))
        matched, modified, up_id, _ = apply_update(
            store, db, name, doc_arg(st, 'q'), st.get('u'),
            bool(st.get('multi')), bool(st.get('upsert')))
        reply['n'] += matched + (up_id is not MISSING)
        reply['nModified'] += modified
        if up_id is not MISSING:
            upserted.append({'index': i, '_id': up_id})
    reply.update(run_statements(cmd, 'updates', update_one), ok=1)
    if upserted:
        reply['upserted'] = upserted
    return reply

def cmd_delete(store, db, cmd):
    name, reply = coll_name(cmd), {'n': 0}

    def delete_one(i, st):
        reject_options(st, ('collation',))
        limit = int_arg(st, 'limit')
        if limit not in (0, 1):
            raise failed_to_parse('The limit field in delete objects must be '
                                  '0 or 1. Got %d' % limit)
        victims = store.find(db, name, compile_filter(doc_arg(st, 'q')))
        victims = victims[:limit] if limit else victims
        if victims:
            store.get(db, name).remove(victims)
        reply['n'] += len(victims)
    reply.update(run_statements(cmd, 'deletes', delete_one), ok=1)
    return reply

def skip_limit(cmd):
    skip, limit = int_arg(cmd, 'skip'), abs(int_arg(cmd, 'limit'))
    if skip < 0:
        raise bad_value('skip value must be non-negative')
    return skip, limit

def cmd_find(store, db, cmd):
    name = coll_name(cmd)
    reject_options(cmd, ('collation', 'min', 'max', 'returnKey', 'tailable',
                         'awaitData', 'showRecordId', 'let'))
    pred = compile_filter(doc_arg(cmd, 'filter'))
    sort = compile_sort(doc_arg(cmd, 'sort'))
    project = compile_projection(doc_arg(cmd, 'projection'))
    skip, limit = skip_limit(cmd)               # batchSize: all in one batch
    docs = store.find(db, name, pred, sort)[skip:]
    docs = docs[:limit] if limit else docs
    return cursor_reply('%s.%s' % (db, name), [project(d) for d in docs])

def cmd_count(store, db, cmd):
    name = coll_name(cmd)
    reject_options(cmd, ('collation',))
    pred = compile_filter(doc_arg(cmd, 'query'))
    skip, limit = skip_limit(cmd)
    n = max(0, len(store.find(db, name, pred)) - skip)
    return {'n': min(n, limit) if limit else n, 'ok': 1}

def cmd_aggregate(store, db, cmd):
    name = coll_name(cmd)
    reject_options(cmd, ('explain', 'collation', 'let'))
    run = compile_pipeline(cmd.get('pipeline'))
    return cursor_reply('%s.%s' % (db, name),
                        run(store.find(db, name, lambda doc: True)))

def cmd_find_and_modify(store, db, cmd):
    name = coll_name(cmd)
    reject_options(cmd, ('arrayFilters', 'collation', 'let'))
    query = doc_arg(cmd, 'query')
    sort = compile_sort(doc_arg(cmd, 'sort'))
    project = compile_projection(doc_arg(cmd, 'fields'))
    remove, upsert = bool(cmd.get('remove')), bool(cmd.get('upsert'))
    if remove == ('update' in cmd):
        raise failed_to_parse('Either an update or remove=true must be '
                              'specified')
    if remove:
        if upsert or cmd.get('new'):
            raise failed_to_parse('Cannot specify new or upsert with remove')
        victims = store.find(db, name, compile_filter(query), sort)[:1]
        if victims:
            store.get(db, name).remove(victims)
        return {'lastErrorObject': {'n': len(victims)},
                'value': project(victims[0]) if victims else None, 'ok': 1}
    matched, _, up_id, touched = apply_update(
        store, db, name, query, cmd.get('update'), False, upsert, sort)
    leo = {'n': len(touched), 'updatedExisting': bool(matched)}
    if up_id is not MISSING:
        leo['upserted'] = up_id
    old, new = touched[0] if touched else (None, None)
    value = new if cmd.get('new') else old
    return {'lastErrorObject': leo,
            'value': None if value is None else project(value), 'ok': 1}

def cmd_drop(store, db, cmd):
    name = coll_name(cmd)
    if not store.drop(db, name):
        raise CommandError(26, 'ns not found')
    return {'nIndexesWas': 1, 'ns': '%s.%s' % (db, name), 'ok': 1}

def cmd_drop_database(store, db, cmd):
    store.dbs.pop(db, None)
    return {'dropped': db, 'ok': 1}

def cmd_create(store, db, cmd):
    name = coll_name(cmd)
    reject_options(cmd, ('capped', 'viewOn', 'pipeline', 'validator',
                         'timeseries', 'clusteredIndex', 'collation'))
    if store.get(db, name):
        raise CommandError(48, 'Collection already exists. NS: %s.%s'
                           % (db, name))
    store.get(db, name, create=True)
    return {'ok': 1}

def cmd_indexes(store, db, cmd):
    """createIndexes (accepted, nothing recorded), listIndexes, dropIndexes."""
    name, command = coll_name(cmd), next(iter(cmd))
    if command == 'createIndexes':
        created = store.get(db, name) is None
        store.get(db, name, create=True)
        return {'createdCollectionAutomatically': created,
                'numIndexesBefore': 1, 'numIndexesAfter': 1,
                'note': 'mongo-standin records no indexes', 'ok': 1}
    if store.get(db, name) is None:
        raise CommandError(26, 'ns does not exist: %s.%s' % (db, name))
    if command == 'listIndexes':
        return cursor_reply('%s.$cmd.listIndexes.%s' % (db, name),
                            [{'v': 2, 'key': {'_id': 1}, 'name': '_id_'}])
    return {'nIndexesWas': 1, 'ok': 1}

def cmd_list_collections(store, db, cmd):
    pred = compile_filter(doc_arg(cmd, 'filter'))
    infos = []
    for name in store.dbs.get(db, {}):
        info = {'name': name, 'type': 'collection'}
        if not cmd.get('nameOnly'):
            info.update(options={}, info={'readOnly': False},
                        idIndex={'v': 2, 'key': {'_id': 1}, 'name': '_id_'})
        infos.append(info)
    return cursor_reply('%s.$cmd.listCollections' % db,
                        [i for i in infos if pred(i)])

def cmd_list_databases(store, db, cmd):
    pred = compile_filter(doc_arg(cmd, 'filter'))
    dbs = [d for d in ({'name': name, 'sizeOnDisk': 0, 'empty': False}
                       for name in store.dbs) if pred(d)]
    if cmd.get('nameOnly'):
        return {'databases': [{'name': d['name']} for d in dbs], 'ok': 1}
    return {'databases': dbs, 'totalSize': 0, 'totalSizeMb': 0, 'ok': 1}

def cmd_get_more(store, db, cmd):
    raise CommandError(43, 'cursor id %r not found: mongo-standin returns '
                       'every result in the first batch (cursor id 0)'
                       % cmd.get('getMore'))

def cmd_kill_cursors(store, db, cmd):
    return {'cursorsKilled': [], 'cursorsNotFound': cmd.get('cursors') or [],
            'cursorsAlive': [], 'cursorsUnknown': [], 'ok': 1}

def constant(reply):
    return lambda store, db, cmd: dict(reply)

COMMANDS = {
    'hello': cmd_hello, 'isMaster': cmd_hello, 'ismaster': cmd_hello,
    'buildInfo': cmd_build_info, 'buildinfo': cmd_build_info,
    'ping': constant({'ok': 1}), 'endSessions': constant({'ok': 1}),
    'getLastError': constant({'err': None, 'n': 0, 'ok': 1}),
    'getlasterror': constant({'err': None, 'n': 0, 'ok': 1}),
    'insert': cmd_insert, 'update': cmd_update, 'delete': cmd_delete,
    'find': cmd_find, 'getMore': cmd_get_more, 'killCursors': cmd_kill_cursors,
    'count': cmd_count, 'aggregate': cmd_aggregate,
    'findAndModify': cmd_find_and_modify, 'findandmodify': cmd_find_and_modify,
    'drop': cmd_drop, 'dropDatabase': cmd_drop_database, 'create': cmd_create,
    'createIndexes': cmd_indexes, 'listIndexes': cmd_indexes,
    'dropIndexes': cmd_indexes, 'deleteIndexes': cmd_indexes,
    'listCollections': cmd_list_collections,
    'listDatabases': cmd_list_databases,
}


# --------------------------------------------------------------------------
# Request handling and main

# mockupdb decodes requests with these options.  With a normal document class
# pymongo turns every sub-document holding "$ref" into a DBRef (reordering its
# keys, or rejecting the whole message when $ref is not a string, which drops
# the connection).  Raw documents, made plain by plain(), round-trip exactly.
mockupdb.CODEC_OPTIONS = CodecOptions(document_class=RawBSONDocument)

def plain(value):
    """Raw (or any) documents and arrays -> dicts and lists, recursively."""
    if isinstance(value, Mapping):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value

def internal_error(exc):
    traceback.print_exc(file=sys.stderr)
    return {'ok': 0, 'code': 1, 'codeName': 'InternalError',
            'errmsg': 'mongo-standin internal error: %s: %s'
            % (type(exc).__name__, exc)}

class Server:
    def __init__(self, verbose=False):
        self.store, self.verbose = Store(), verbose

    def execute(self, db, cmd):
        """Run one command document; always returns a reply document."""
        try:
            cmd = plain(cmd)
            if isinstance(cmd.get('$query'), Mapping):
                cmd = cmd['$query']             # legacy OP_QUERY wrapping
            if not cmd:
                raise failed_to_parse('empty command')
            name = next(iter(cmd))
            if name not in COMMANDS:
                raise CommandError(59, "no such command: '%s'" % name
                                   + NOT_SUPPORTED)
            if 'startTransaction' in cmd or 'autocommit' in cmd:
                raise CommandError(20, 'transactions' + NOT_SUPPORTED)
            return COMMANDS[name](self.store, db, cmd)
        except CommandError as e:
            return e.reply()
        except Exception as e:                  # never kill the connection
            return internal_error(e)

    def handle(self, request):
        """The mockupdb autoresponder; returns True (request answered)."""
        if isinstance(request, (mockupdb.OpMsg, mockupdb.Command)):
            # OP_MSG, or a legacy OP_QUERY on db.$cmd (the handshake).
            reply = self.execute(request.namespace, request.doc)
            if isinstance(request, mockupdb.OpMsg) and \
                    request.flags & mockupdb.OP_MSG_FLAGS['moreToCome']:
                if reply.get('ok') != 1 or 'writeErrors' in reply:
                    print('mongo-standin: unacknowledged write failed: %r'
                          % reply, file=sys.stderr, flush=True)
                self.log('unacknowledged (moreToCome): %r' % reply)
                return True
            try:
                request.replies(reply)
            except (bson.errors.BSONError, ValueError, TypeError) as e:
                request.replies(internal_error(e))   # e.g. unencodable reply
        elif isinstance(request, (mockupdb.OpQuery, mockupdb.OpGetMore)):
            request.fail('mongo-standin supports only commands (OP_MSG, or '
                         'OP_QUERY on db.$cmd), not legacy %s'
                         % type(request).__name__)
        else:                                   # legacy writes get no reply
            print('mongo-standin: ignoring legacy %r (not supported)'
                  % request, file=sys.stderr, flush=True)
        return True

    def log(self, msg):
        if self.verbose:
            print(msg, flush=True)

def write_port_file(path, port):
    """Write the port atomically: a reader sees nothing or the whole line."""
    tmp = '%s.tmp.%d' % (path, os.getpid())
    with open(tmp, 'w') as f:
        f.write('%d\n' % port)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--host', default='127.0.0.1')
    parser.add_argument('--port', type=int, default=0,
                        help='TCP port; 0 (default) picks a free one')
    parser.add_argument('--port-file', help='write the chosen port here')
    parser.add_argument('--verbose', action='store_true',
                        help='log every request and reply to stdout')
    args = parser.parse_args(argv)

    server = Server(verbose=args.verbose)
    mock = mockupdb.MockupDB(port=args.port, verbose=args.verbose,
                             request_timeout=int(1e6))
    mock._address = (args.host, args.port)     # mockupdb binds 'localhost'
    mock.autoresponds(server.handle)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    port = mock.run()
    if args.port_file:
        write_port_file(args.port_file, port)
    print('mongo-standin listening on %s:%d' % (args.host, port), flush=True)
    while not stop.wait(0.5):
        pass
    mock.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
