"""Minimal ``slicer.parameterNodeWrapper`` for slicer-core, where the real one cannot load (it imports qt/ctk).

Faithful to Slicer's storage format (Base/Python/slicer/parameterNodeWrapper/serializers.py), so a scene saved here
reads back in Slicer and vice versa: numbers/str/Path via ``str(value)``, bools as "True"/"False", enums by member
name, nodes as an empty parameter plus a node reference, parameter-pack members as "<pack>.<member>". Values are
read lazily and a missing value is written from its default on first read, as in Slicer. GUI binding
(``connectGui``) needs Qt widgets and raises here; the .ui contract test checks the bindings instead.
"""

import enum
import pathlib
import types
import typing

import slicer

__all__ = ["parameterNodeWrapper", "parameterPack", "WithinRange", "Minimum", "Maximum", "Choice", "Default"]


class Validator:
    def validate(self, value) -> None:
        raise NotImplementedError(type(self).__name__)


class WithinRange(Validator):
    def __init__(self, minimum, maximum) -> None:
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within range [{self.minimum}, {self.maximum}], is {value}")


class Minimum(Validator):
    def __init__(self, minimum) -> None:
        self.minimum = minimum

    def validate(self, value) -> None:
        if value < self.minimum:
            raise ValueError(f"Value must be greater than {self.minimum}, is {value}")


class Maximum(Validator):
    def __init__(self, maximum) -> None:
        self.maximum = maximum

    def validate(self, value) -> None:
        if value > self.maximum:
            raise ValueError(f"Value must be less than {self.maximum}, is {value}")


class Choice(Validator):
    def __init__(self, choices) -> None:
        self.choices = list(choices)

    def validate(self, value) -> None:
        if value not in self.choices:
            raise ValueError(f"Value is {value}, but must be in one of the following: {self.choices}")


class Default:
    def __init__(self, value) -> None:
        self.value = value


def _split(annotated):
    if typing.get_origin(annotated) is typing.Annotated:
        base, *extras = typing.get_args(annotated)
        return base, extras
    return annotated, []


def _nodeClasses(datatype):
    if typing.get_origin(datatype) in (typing.Union, types.UnionType):
        classes = typing.get_args(datatype)
    else:
        classes = (datatype,)
    if all(isinstance(c, type) and issubclass(c, slicer.vtkMRMLNode) for c in classes):
        return classes
    return None


class _Serializer:
    """Reads/writes one value of ``datatype`` under ``name`` in a vtkMRMLScriptedModuleNode."""

    def __init__(self, datatype, validators) -> None:
        self.datatype = datatype
        self.validators = [v for v in validators if isinstance(v, Validator)]
        self.nodeClasses = _nodeClasses(datatype)
        if self.nodeClasses is None and not (
            datatype in (int, float, str, bool, pathlib.Path)
            or (isinstance(datatype, type) and issubclass(datatype, enum.Enum))
            or _isPack(datatype)
        ):
            raise TypeError(f"Unsupported parameter type {datatype!r}")

    def default(self):
        if self.nodeClasses is not None:
            return None
        if isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum):
            return next(iter(self.datatype))
        return self.datatype()

    def isIn(self, node, name: str) -> bool:
        if _isPack(self.datatype):
            first = next(iter(self.datatype.allParameters))
            return self.datatype.allParameters[first].serializer.isIn(node, f"{name}.{first}")
        return node.HasParameter(name)

    def validate(self, value) -> None:
        if self.nodeClasses is not None:
            if value is not None and not isinstance(value, self.nodeClasses):
                raise TypeError(f"Value must be one of {self.nodeClasses}, is {type(value)}")
        elif _isPack(self.datatype):
            if not isinstance(value, (self.datatype, _BoundPack)):
                raise TypeError(f"Value must be a {self.datatype.__name__}, is {type(value)}")
        elif self.datatype is float:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"Value must be a number, is {type(value)}")
        elif not isinstance(value, self.datatype) or (self.datatype is int and isinstance(value, bool)):
            raise TypeError(f"Value must be of type '{self.datatype}', is type '{type(value)}' value '{value}'")
        for validator in self.validators:
            validator.validate(value)

    def write(self, node, name: str, value) -> None:
        self.validate(value)
        if self.nodeClasses is not None:
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        elif _isPack(self.datatype):
            wasModifying = node.StartModify()
            for member, info in self.datatype.allParameters.items():
                info.serializer.write(node, f"{name}.{member}", getattr(value, member))
            node.EndModify(wasModifying)
        elif self.datatype is bool:
            node.SetParameter(name, "True" if value else "False")
        elif isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum):
            node.SetParameter(name, value.name)
        else:
            node.SetParameter(name, str(value))

    def read(self, node, name: str):
        if self.nodeClasses is not None:
            return node.GetNodeReference(name)
        if _isPack(self.datatype):
            return _BoundPack(self.datatype, node, name)
        text = node.GetParameter(name)
        if self.datatype is bool:
            return text == "True"
        if isinstance(self.datatype, type) and issubclass(self.datatype, enum.Enum):
            try:
                return self.datatype[text]
            except KeyError as error:
                raise ValueError(f"Found {text!r} in parameter node but it is not a name in {self.datatype!r}") \
                    from error
        return self.datatype(text)


class _ParameterInfo:
    def __init__(self, name, serializer, default, annotated) -> None:
        self.name, self.serializer, self.default, self.annotated = name, serializer, default, annotated


def _collect(classtype) -> dict:
    parameters = {}
    for name, annotated in typing.get_type_hints(classtype, include_extras=True).items():
        datatype, extras = _split(annotated)
        serializer = _Serializer(datatype, extras)
        explicit = [extra.value for extra in extras if isinstance(extra, Default)]
        if name in classtype.__dict__:
            default = classtype.__dict__[name]
        elif explicit:
            default = explicit[0]
        else:
            default = serializer.default()
        parameters[name] = _ParameterInfo(name, serializer, default, annotated)
    return parameters


def _isPack(datatype) -> bool:
    return getattr(datatype, "_is_parameter_pack", False)


def _readOrDefault(node, name: str, info: _ParameterInfo):
    if not info.serializer.isIn(node, name):
        info.serializer.write(node, name, info.default)
    return info.serializer.read(node, name)


class _BoundPack:
    """A parameter pack read from a node: attribute writes go straight to the node, like Slicer's observed packs."""

    def __init__(self, packType, node, prefix: str) -> None:
        object.__setattr__(self, "_packType", packType)
        object.__setattr__(self, "_node", node)
        object.__setattr__(self, "_prefix", prefix)

    def __getattr__(self, member):
        info = self._packType.allParameters.get(member)
        if info is None:
            raise AttributeError(member)
        return _readOrDefault(self._node, f"{self._prefix}.{member}", info)

    def __setattr__(self, member, value) -> None:
        info = self._packType.allParameters.get(member)
        if info is None:
            raise AttributeError(f"{self._packType.__name__} has no parameter '{member}'")
        info.serializer.write(self._node, f"{self._prefix}.{member}", value)


def parameterPack(classtype):
    """Dataclass-like group of parameters stored under "<name>.<member>"."""
    allParameters = _collect(classtype)

    def __init__(self, **kwargs):
        for name, info in allParameters.items():
            value = kwargs.pop(name, info.default)
            info.serializer.validate(value)
            object.__setattr__(self, name, value)
        if kwargs:
            raise TypeError(f"Unknown parameters {sorted(kwargs)}")

    def __setattr__(self, name, value):
        if name not in allParameters:
            raise AttributeError(f"{classtype.__name__} has no parameter '{name}'")
        allParameters[name].serializer.validate(value)
        object.__setattr__(self, name, value)

    for name in allParameters:
        if name in classtype.__dict__:
            delattr(classtype, name)
    classtype.__init__ = __init__
    classtype.__setattr__ = __setattr__
    classtype.allParameters = allParameters
    classtype._is_parameter_pack = True
    return classtype


def _makeProperty(name: str):
    def getter(self):
        return _readOrDefault(self.parameterNode, name, self.allParameters[name])

    def setter(self, value):
        self.allParameters[name].serializer.write(self.parameterNode, name, value)

    return property(getter, setter)


def _qtOnly(self, *args, **kwargs):
    raise RuntimeError("connectGui/disconnectGui bind Qt widgets; there is no Qt in the slicer-core harness")


def parameterNodeWrapper(classtype=None):
    """Class decorator giving typed properties over a vtkMRMLScriptedModuleNode (``Wrapper(node)``)."""

    def wrap(cls):
        allParameters = _collect(cls)
        for name in allParameters:
            setattr(cls, name, _makeProperty(name))

        def __init__(self, parameterNode):
            if parameterNode is None or not parameterNode.IsA("vtkMRMLScriptedModuleNode"):
                raise ValueError(f"parameterNode must be a vtkMRMLScriptedModuleNode, got {parameterNode!r}")
            self.parameterNode = parameterNode

        def dataType(name):
            top, _, member = name.partition(".")
            annotated = allParameters[top].annotated
            return _split(annotated)[0].allParameters[member].annotated if member else annotated

        def getValue(self, name):
            top, _, member = name.partition(".")
            value = getattr(self, top)
            return getattr(value, member) if member else value

        def setValue(self, name, value):
            top, _, member = name.partition(".")
            setattr(getattr(self, top), member, value) if member else setattr(self, top, value)

        cls.__init__ = __init__
        cls.allParameters = allParameters
        cls._is_parameter_node_wrapper = True
        cls.dataType = staticmethod(dataType)
        cls.getValue = getValue
        cls.setValue = setValue
        cls.connectGui = _qtOnly
        cls.disconnectGui = _qtOnly
        cls.StartModify = lambda self: self.parameterNode.StartModify()
        cls.EndModify = lambda self, wasModified: self.parameterNode.EndModify(wasModified)
        cls.AddObserver = lambda self, event, callback, priority=0.0: self.parameterNode.AddObserver(event, callback,
                                                                                                    priority)
        cls.RemoveObserver = lambda self, tag: self.parameterNode.RemoveObserver(tag)
        cls.Modified = lambda self: self.parameterNode.Modified()
        return cls

    return wrap if classtype is None else wrap(classtype)
