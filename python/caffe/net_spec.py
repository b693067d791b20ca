"""pycaffe's NetSpec: write nets in Python.

    from caffe import layers as L, params as P
    n = caffe.NetSpec()
    n.data, n.label = L.Data(source='train_lmdb', backend=P.Data.LMDB, batch_size=64, ntop=2)
    n.conv1 = L.Convolution(n.data, kernel_size=5, num_output=20, weight_filler=dict(type='xavier'))
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    open('net.prototxt', 'w').write(str(n.to_proto()))

`L.<Type>(*bottoms, **kwargs)` describes a layer of that type. Each keyword
goes to the layer's own parameter message (`kernel_size` of a Convolution to
its `convolution_param`) when that message has such a field, else to the
LayerParameter itself (`include`, `loss_weight`, `name`); keywords ending in
`param` (`param`, `transform_param`, `convolution_param`) always go to the
LayerParameter. Dicts become messages, lists become repeated fields (a list of
dicts, repeated messages), and a single value given to a repeated field is a
list of one. `ntop=N` gives a layer N tops (0: the layer itself is returned;
2 or more: a tuple), `in_place=True` writes its top over its bottom.

Names are pycaffe's: a top (and the layer making it) takes the name it is
assigned to in a NetSpec; anything else is named after its type and a count
(`Convolution1`, `ReLU2`). `P.<Type>.<VALUE>` is an enum value of the type's
parameter message (`P.Pooling.MAX`).

Differences (all accept more than pycaffe, none changes what pycaffe accepts):
`to_proto` also takes top-less layers (`ntop=0`), tuples count as lists, an empty list leaves a field empty, an enum may also be
given by its name (`pool='MAX'`), a message field may be given a message, a
Deconvolution (or Im2col) layer's keywords go to its `convolution_param`, and
an unknown keyword is an AttributeError that names the layer type and both
messages searched. `P.Resize.<VALUE>` also finds the SSD fork's resize values
(its ResizeParameter, `SsdResizeParameter` here); given to an enum field, such
a value is matched by name (`P.Resize.NEAREST` is 1 for the Resize layer, 3 in
a `transform_param`'s `resize_param.interp_mode`).
"""
from collections import Counter, OrderedDict

from .proto import caffe_pb2

__all__ = ['layers', 'params', 'NetSpec', 'to_proto', 'Top', 'Function', 'param_name_dict', 'assign_proto']


def param_name_dict():
    """Layer type -> the stem of its parameter field, from the schema: a field
    `<stem>_param` of message type `<Type>Parameter` serves layers of type
    `<Type>` (`Convolution` -> `convolution`, `InnerProduct` -> `inner_product`)."""
    names = {}
    for field in caffe_pb2.LayerParameter.DESCRIPTOR.fields:
        if field.name.endswith('_param') and field.message_type is not None \
                and field.message_type.name.endswith('Parameter'):
            names[field.message_type.name[:-len('Parameter')]] = field.name[:-len('_param')]
    return names


_param_names = param_name_dict()
# Layer types whose parameters live in another type's message.
_param_names.setdefault('Deconvolution', 'convolution')
_param_names.setdefault('Im2col', 'convolution')


def _field(proto, name):
    field = proto.DESCRIPTOR.fields_by_name.get(name)
    if field is None:
        raise AttributeError('%s has no field %r' % (proto.DESCRIPTOR.name, name))
    return field


def _is_repeated(field):
    # `label` is deprecated in newest protobuf releases; `is_repeated` replaces it.
    rep = getattr(field, 'is_repeated', None)
    if rep is not None:
        return rep() if callable(rep) else rep
    return field.label == field.LABEL_REPEATED


def _scalar(field, val, where):
    """`val` as a value of the scalar `field`: enum names become numbers."""
    if field.enum_type is not None and isinstance(val, _NamedEnumValue):
        # A P.Resize value: its name picks the number in this field's enum.
        value = field.enum_type.values_by_name.get(val.enum_name)
        return int(val) if value is None else value.number
    if field.enum_type is not None and isinstance(val, str):
        value = field.enum_type.values_by_name.get(val)
        if value is None:
            raise ValueError('%s: %r is not a value of %s (values: %s)' % (
                where, val, field.enum_type.name, ', '.join(v.name for v in field.enum_type.values)))
        return value.number
    return val


def assign_proto(proto, name, val):
    """Set field `name` of message `proto` from a Python value, recursively:
    dicts fill messages, lists fill repeated fields (a list of dicts adds one
    message per dict), a lone value given to a repeated field is a list of one,
    anything else is assigned."""
    field = _field(proto, name)
    where = '%s.%s' % (proto.DESCRIPTOR.name, name)
    is_message = field.message_type is not None
    if _is_repeated(field):
        if not isinstance(val, (list, tuple)):
            val = [val]
        container = getattr(proto, name)
        for item in val:
            if is_message:
                if isinstance(item, dict):
                    msg = container.add()
                    for k, v in item.items():
                        assign_proto(msg, k, v)
                elif hasattr(item, 'DESCRIPTOR'):
                    container.add().CopyFrom(item)
                else:
                    raise TypeError('%s is a repeated %s: give dicts (or messages), not %r'
                                    % (where, field.message_type.name, item))
            else:
                container.append(_scalar(field, item, where))
    elif is_message:
        if isinstance(val, dict):
            msg = getattr(proto, name)
            for k, v in val.items():  # an empty dict leaves the message unset, as in pycaffe
                assign_proto(msg, k, v)
        elif hasattr(val, 'DESCRIPTOR'):
            getattr(proto, name).CopyFrom(val)
        else:
            raise TypeError('%s is a %s message: give a dict, not %r' % (where, field.message_type.name, val))
    else:
        try:
            setattr(proto, name, _scalar(field, val, where))
        except (TypeError, ValueError) as e:
            raise type(e)('%s: cannot assign %r: %s' % (where, val, e)) from None


class Top(object):
    """One output blob of a layer (the `n`-th top of Function `fn`)."""

    def __init__(self, fn, n):
        self.fn = fn
        self.n = n

    def to_proto(self):
        """A NetParameter with every layer this top depends on."""
        return to_proto(self)

    def _update(self, params):
        self.fn._update(params)

    def _to_proto(self, layers, names, autonames):
        return self.fn._to_proto(layers, names, autonames)


class Function(object):
    """A layer: its type, its bottoms (Tops) and its keyword parameters."""

    def __init__(self, type_name, inputs, params):
        self.type_name = type_name
        for index, inp in enumerate(inputs):
            if not isinstance(inp, Top):
                raise TypeError('%s input %d is not a Top (type is %s)' % (type_name, index, type(inp)))
        self.inputs = inputs
        self.params = dict(params)
        # ntop and in_place shape the layer; they are not LayerParameter fields.
        self.ntop = self.params.pop('ntop', 1)
        self.in_place = self.params.pop('in_place', False)
        self.tops = tuple(Top(self, n) for n in range(self.ntop))

    def _get_name(self, names, autonames):
        if self not in names:
            if self.ntop > 0:
                # A layer is named after its first top.
                names[self] = self._get_top_name(self.tops[0], names, autonames)
            else:
                autonames[self.type_name] += 1
                names[self] = self.type_name + str(autonames[self.type_name])
        return names[self]

    def _get_top_name(self, top, names, autonames):
        if top not in names:
            autonames[top.fn.type_name] += 1
            names[top] = top.fn.type_name + str(autonames[top.fn.type_name])
        return names[top]

    def _update(self, params):
        self.params.update(params)

    def _to_proto(self, layers, names, autonames):
        if self in layers:
            return
        bottom_names = []
        for inp in self.inputs:
            inp._to_proto(layers, names, autonames)
            bottom_names.append(layers[inp.fn].top[inp.n])
        layer = caffe_pb2.LayerParameter()
        layer.type = self.type_name
        layer.bottom.extend(bottom_names)
        if self.in_place:
            layer.top.extend(layer.bottom)
        else:
            for top in self.tops:
                layer.top.append(self._get_top_name(top, names, autonames))
        layer.name = self._get_name(names, autonames)

        stem = _param_names.get(self.type_name)
        type_param = getattr(layer, stem + '_param') if stem else None
        for k, v in self.params.items():
            if k.endswith('param'):
                assign_proto(layer, k, v)
            elif type_param is not None and k in type_param.DESCRIPTOR.fields_by_name:
                assign_proto(type_param, k, v)
            elif k in layer.DESCRIPTOR.fields_by_name:
                assign_proto(layer, k, v)
            else:
                searched = 'LayerParameter' + (' or %s' % type_param.DESCRIPTOR.name if type_param is not None else '')
                raise AttributeError('L.%s(%s=...): no field %r in %s' % (self.type_name, k, k, searched))
        layers[self] = layer


class NetSpec(object):
    """Tops (or top-less layers) assigned as attributes or items, in order;
    `to_proto()` gives the NetParameter of every layer they need, with the
    assigned names."""

    def __init__(self):
        super(NetSpec, self).__setattr__('tops', OrderedDict())

    def __setattr__(self, name, value):
        self.tops[name] = value

    def __getattr__(self, name):
        try:
            return self.tops[name]
        except KeyError:
            raise AttributeError('NetSpec has no top %r' % name) from None

    def __setitem__(self, key, value):
        self.tops[key] = value

    def __getitem__(self, item):
        return self.tops[item]

    def __delitem__(self, name):
        del self.tops[name]

    def keys(self):
        return list(self.tops.keys())

    def vals(self):
        return list(self.tops.values())

    def update(self, name, params):
        """Add keyword parameters to the layer making top `name`."""
        self.tops[name]._update(params)

    def to_proto(self):
        names = {v: k for k, v in self.tops.items()}
        autonames = Counter()
        layers = OrderedDict()
        for top in self.tops.values():
            top._to_proto(layers, names, autonames)
        net = caffe_pb2.NetParameter()
        net.layer.extend(layers.values())
        return net


def to_proto(*tops):
    """A NetParameter with every layer the given tops (or top-less layers)
    depend on, all named automatically."""
    layers = OrderedDict()
    autonames = Counter()
    for top in tops:
        top._to_proto(layers, {}, autonames)
    net = caffe_pb2.NetParameter()
    net.layer.extend(layers.values())
    return net


class Layers(object):
    """`L.Convolution(bottom, kernel_size=3)`: a layer of any type, by name."""

    def __getattr__(self, name):
        if name.startswith('__'):
            # Let copy, pickle and introspection see an ordinary object.
            raise AttributeError(name)

        def layer_fn(*args, **kwargs):
            fn = Function(name, args, kwargs)
            if fn.ntop == 0:
                return fn
            if fn.ntop == 1:
                return fn.tops[0]
            return fn.tops
        layer_fn.__name__ = name
        return layer_fn


class _NamedEnumValue(int):
    """An enum number that keeps its name. `P.Resize` reads two messages
    whose enums share names with other numbers (NEAREST is 1 in ResizeParameter,
    3 in the SSD fork's resize modes): given to an enum field, the name decides."""

    def __new__(cls, number, enum_name):
        value = super(_NamedEnumValue, cls).__new__(cls, number)
        value.enum_name = enum_name
        return value

    def __reduce__(self):  # copy and pickle keep the name
        return _NamedEnumValue, (int(self), self.enum_name)


# P.<Type> whose values may also come from a second message: the SSD fork's
# ResizeParameter (P.Resize.WARP, P.Resize.LINEAR in its scripts) is
# SsdResizeParameter here, as caffe-tch's Resize layer owns ResizeParameter.
_ENUM_FALLBACK = {'Resize': 'SsdResizeParameter'}


class _EnumValues(object):
    def __init__(self, type_name):
        self._type_name = type_name

    def __getattr__(self, value_name):
        if value_name.startswith('__'):
            raise AttributeError(value_name)
        message = getattr(caffe_pb2, self._type_name + 'Parameter', None)
        if message is None:
            raise AttributeError('P.%s: the schema has no message %sParameter' % (self._type_name, self._type_name))
        fallback = _ENUM_FALLBACK.get(self._type_name)
        for source in (message, getattr(caffe_pb2, fallback) if fallback else None):
            if source is not None and hasattr(source, value_name):
                value = getattr(source, value_name)
                if fallback and isinstance(value, int):
                    return _NamedEnumValue(value, value_name)
                return value
        raise AttributeError('P.%s.%s: %sParameter has no enum value %s'
                             % (self._type_name, value_name, self._type_name, value_name)
                             + (' (nor has %s)' % fallback if fallback else ''))


class Parameters(object):
    """`P.Pooling.MAX`: the enum values of `<Type>Parameter` messages."""

    def __getattr__(self, name):
        if name.startswith('__'):
            raise AttributeError(name)
        return _EnumValues(name)


layers = Layers()
params = Parameters()
