"""The HubSpot emulator's reference endpoints: v4 associations, owners and property definitions.
Mixed into `HubSpotEmulator`."""

from __future__ import annotations

from typing import Any

from connectors.emulators.http import Request, Response
from connectors.emulators.hubspot_base import HubSpotBase
from connectors.emulators.hubspot_properties import PropertyDef
from connectors.emulators.hubspot_schema import ApiError, resolve_type

ASSOCIATION_BATCH_MAX = 1000

OWNERS_MAX = 500
# Objects whose properties may require unique values: HubSpot documents them for contacts,
# companies, deals, tickets and custom objects (developers.hubspot.com changelog "Unique Properties
# support for newly created Contact properties": "HubSpot has provided unique property support for
# Companies, Deals, Tickets, and Custom Objects"), not for engagements (tasks, notes, calls...) or
# leads. Of the objects emulated here, contacts only. The refusal's wording is not documented; it is
# modelled as the VALIDATION_ERROR HubSpot answers for other invalid property definitions.
UNIQUE_CAPABLE = frozenset({"contacts"})


class HubSpotCatalog(HubSpotBase):
    # -- associations v4 -------------------------------------------------------------------------

    def _v4_list(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        target = resolve_type(request.params["to"])
        record = self.store.get(object_type, request.params["id"])
        results = [{"toObjectId": to_id,
                    "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id, "label": None}]}
                   for to_id, type_id in self.store.associated(object_type.name, record.id, target.name)]
        return Response(200, {"results": results})

    def _v4_batch_read(self, request: Request) -> Response:
        """POST /crm/v4/associations/{from}/{to}/batch/read: each input's associated ids, at most
        ASSOCIATION_BATCH_MAX inputs (HubSpot's limit since 2025-02-10, developer changelog "Batch
        Read Limit for HubSpot Associations API"). Inputs without any association, or unknown, are
        listed under `errors` with status 207, as HubSpot does; the others under `results`."""
        object_type = resolve_type(request.params["from_type"])
        target = resolve_type(request.params["to"])
        inputs = (request.json() or {}).get("inputs") or []
        if len(inputs) > ASSOCIATION_BATCH_MAX:
            raise ApiError(400, "VALIDATION_ERROR", f"Too many inputs. Maximum allowed is {ASSOCIATION_BATCH_MAX}")
        results, missing = [], []
        for item in inputs:
            raw = str((item or {}).get("id"))
            try:
                record = self.store.get(object_type, raw)
            except ApiError:
                missing.append(raw)
                continue
            linked = self.store.associated(object_type.name, record.id, target.name)
            if not linked:
                missing.append(raw)
                continue
            results.append({"from": {"id": raw}, "to": [
                {"toObjectId": to_id, "associationTypes": [{"category": "HUBSPOT_DEFINED", "typeId": type_id,
                                                             "label": None}]} for to_id, type_id in linked]})
        body: dict[str, Any] = {"status": "COMPLETE", "results": results}
        if not missing:
            return Response(200, body)
        body["numErrors"] = len(missing)
        body["errors"] = [{"status": "error", "category": "OBJECT_NOT_FOUND",
                           "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                           "message": f"No {target.name} is associated with {object_type.singular} {raw}.",
                           "context": {"fromObjectId": [raw]}, "errors": []} for raw in missing]
        return Response(207, body)

    def _v4_create(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        target = resolve_type(request.params["to"])
        record = self.store.get(object_type, request.params["id"])
        for spec in request.json() or []:
            self.store.associate(object_type, record.id, target, int(request.params["to_id"]),
                                 int(spec.get("associationTypeId", -1)))
        return Response(201, {"fromObjectTypeId": object_type.type_id, "fromObjectId": record.id,
                              "toObjectTypeId": target.type_id, "toObjectId": int(request.params["to_id"]),
                              "labels": []})

    # -- owners and properties -------------------------------------------------------------------

    def _owners(self, request: Request) -> Response:
        limit = self._int_arg(request, "limit", 100, OWNERS_MAX)
        after = int(request.arg("after") or 0)
        email = (request.arg("email") or "").lower()
        owners = sorted((o for o in self.store.owners.values()
                         if o.archived == self._flag(request, "archived") and o.id >= after
                         and (not email or o.email.lower() == email)), key=lambda o: o.id)
        body: dict[str, Any] = {"results": [o.to_json() for o in owners[:limit]]}
        if len(owners) > limit:
            body["paging"] = self._next_link(request.path, str(owners[limit].id))
        return Response(200, body)

    def _owner(self, request: Request) -> Response:
        raw = request.params["id"]
        by_user = request.arg("idProperty") == "userId"
        owner = next((o for o in self.store.owners.values()
                      if str(o.user_id if by_user else o.id) == raw), None)
        if owner is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Owner {raw} not found")
        return Response(200, owner.to_json())

    def _properties(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        defs = self.store.property_defs[object_type.name].values()
        return Response(200, {"results": [d.to_json() for d in defs]})

    def _property(self, request: Request) -> Response:
        defs = self.store.property_defs[resolve_type(request.params["type"]).name]
        definition = defs.get(request.params["name"])
        if definition is None:
            raise ApiError(404, "OBJECT_NOT_FOUND", f"Property {request.params['name']} does not exist")
        return Response(200, definition.to_json())

    def _create_property(self, request: Request) -> Response:
        object_type = resolve_type(request.params["type"])
        body = request.json() or {}
        missing = [k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)]
        if missing:
            raise ApiError(400, "VALIDATION_ERROR", f"Missing required fields: {', '.join(missing)}")
        defs = self.store.property_defs[object_type.name]
        if body.get("hasUniqueValue") and object_type.name not in UNIQUE_CAPABLE:
            raise ApiError(400, "VALIDATION_ERROR",
                           f"Unique value properties are not supported for object type {object_type.type_id}",
                           subCategory="PropertyValidationError.UNIQUE_VALUE_NOT_SUPPORTED")
        if body["name"] in defs:
            raise ApiError(409, "OBJECT_ALREADY_EXISTS", f"Property named '{body['name']}' already exists.",
                           subCategory="PropertyValidationError.PROPERTY_ALREADY_EXISTS")
        definition = PropertyDef(
            body["name"], body["label"], body["type"], body["fieldType"], body["groupName"],
            options=[{"hidden": False, "displayOrder": i, **option}
                     for i, option in enumerate(body.get("options") or [])],
            has_unique_value=bool(body.get("hasUniqueValue")), hubspot_defined=False,
            description=body.get("description") or "", created_at=self.clock(),
        )
        defs[definition.name] = definition
        return Response(201, definition.to_json())
