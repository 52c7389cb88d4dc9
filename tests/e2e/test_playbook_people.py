"""The playbook's "To Dispatch" use cases for technicians, appointments, calendar events and the Gateway,
and the refusals Dispatch answers with an `err` event (the CRM record's error field and the sync log).

Same set-up as test_playbook_use_cases.py: the playbook org published through agent/in over real sockets,
what the Dispatch emulator holds compared with the playbook sample of each use case.
"""

from __future__ import annotations

from typing import Any

from tests.e2e.test_playbook_harness import SENT, Playbook, header, ids, playbook, published

__all__ = ["playbook", "published"]  # the fixtures, imported for pytest

TOM_PHOTO = "/9j/4CB0b20gaGVhZHNob3Q="
GATEWAY_IDS = ("organization_id", "job_id")  # the Gateway samples send Dispatch's ids


# -- Users (FSM quick start) and what rides on a user ------------------------------------------------------


def test_fsm_user_from_a_service_resource(published: Playbook) -> None:
    tom = published.user_of("Tom Watts")
    assert published.held("user", tom) == {
        "external_id": tom,
        "first_name": "Tom",
        "last_name": "Watts",
        "roles": ["dispatcher", "technician"],
        "phone_number": "(555) 122-1912",
        "email": "tom.watts@spark.example",
        "external_organization_id": ids(published)["spark"],
    }
    header(published, "user", version="v3")


def test_fsm_user_from_a_user_flagged_as_technician(published: Playbook) -> None:
    lena = published.find("User", Username="lena.park@spark.example")
    assert published.held("user", lena) == {
        "external_id": lena,
        "first_name": "Lena",
        "last_name": "Park",
        "roles": ["dispatcher", "technician"],
        "phone_number": "(555) 122-1915",
        "email": "lena.park@spark.example",
        "external_organization_id": ids(published)["spark"],  # the User's Dispatch_Organization__c
    }
    assert published.sf.get("User", lena)["Dispatch_Last_Synced__c"] is not None  # the user's ack


def test_fsm_user_from_a_contact_flagged_as_technician(published: Playbook) -> None:
    raj = published.find("Contact", LastName="Patel")
    assert published.held("user", raj) == {
        "external_id": raj,
        "first_name": "Raj",
        "last_name": "Patel",
        "roles": ["technician"],
        "phone_number": "(555) 122-1914",
        "email": "raj.patel@spark.example",
        "external_organization_id": ids(published)["spark"],  # the Contact's Account
    }
    assert published.sf.get("Contact", raj)["Dispatch_Last_Synced__c"] is not None


def test_the_three_technician_sources_coexist_one_user_each(published: Playbook) -> None:
    """ServiceResource (its User's id), User (its own id), Contact (its own id): four people, four users,
    every one sent once with the FSM sample's header; the customer Contact (not flagged) is no user."""
    people = {
        published.user_of("Tom Watts"),
        published.user_of("Ana Ruiz"),
        published.find("User", Username="lena.park@spark.example"),
        published.find("Contact", LastName="Patel"),
    }
    assert set(published.dispatch.records("user")) == people
    assert sorted(item["record"]["external_id"] for item in published.wire("user")) == sorted(people)
    assert ids(published)["jane"] not in published.dispatch.records("user")
    header(published, "user", version="v3")


def test_clearing_the_technician_checkbox_stops_publishing_the_user(playbook: Playbook) -> None:
    lena = playbook.find("User", Username="lena.park@spark.example")
    playbook.publish()
    playbook.sf.update("User", lena, {"Dispatch_Technician__c": False, "MobilePhone": "(555) 122-1999"})
    playbook.publish()
    assert playbook.dispatch.records("user")[lena]["phone_number"] == "(555) 122-1915"
    assert len([item for item in playbook.wire("user") if item["record"]["external_id"] == lena]) == 1


def test_a_contact_technician_of_an_account_not_in_dispatch_is_refused(playbook: Playbook) -> None:
    account = playbook.sf.insert("Account", {"Name": "Not a provider", "Phone": "(555) 010-0400"})
    contact = playbook.sf.insert(
        "Contact",
        {
            "Name": "Ola Berg",
            "FirstName": "Ola",
            "LastName": "Berg",
            "Email": "ola@example.com",
            "AccountId": account,
            "Dispatch_Technician__c": True,
        },
    )
    playbook.publish()
    assert contact not in playbook.dispatch.records("user")
    _refused(playbook, "Contact", contact, "Problem writing user", f"external_organization_id {account}")


def test_user_trades(published: Playbook) -> None:
    tom = published.user_of("Tom Watts")
    assert published.held("trade_account_user", tom) == {
        "external_id": tom,
        "trades": ["Electrical", "HVAC", "Solar"],
    }
    header(published, "trade_account_user")


def test_user_tag_ranking(published: Playbook) -> None:
    tom = published.user_of("Tom Watts")
    assert published.held("user_tag", f"{tom}/ranking_score", sent=("external_user_id",)) == {
        "external_id": tom,
        "external_user_id": tom,
        "key": "ranking_score",
        "value": "44",
    }
    header(published, "user_tag", version="v1")


def test_user_photo_goes_as_the_envelope_attachment(published: Playbook) -> None:
    tom = published.user_of("Tom Watts")
    record = {
        "external_id": tom,
        "external_organization_id": ids(published)["spark"],
        "file_name": "tom_watts.jpg",
    }
    [sent] = published.wire("profile_picture")
    assert sent == {
        "header": {"record_type": "profile_picture", "version": "v3"},
        "record": record,
        "attachment": TOM_PHOTO,
    }
    assert published.held("profile_picture", tom) == {**record, "attachment": TOM_PHOTO}


def test_user_service_area_by_postal_codes(published: Playbook) -> None:
    tom = published.user_of("Tom Watts")
    assert published.held("service_area", f"zcta5-{tom}") == {
        "external_id": f"zcta5-{tom}",  # "your_service_area_external_id-your_user_id"
        "name": "Tom Watts",
        "service_area_type": "zcta5",
        "postal_codes": [{"postal_code": "02446"}, {"postal_code": "02447"}, {"postal_code": "02488"}],
    }
    assert published.dispatch.records("service_area")[f"zcta5-{tom}"]["external_user_id"] == tom


def test_user_service_area_by_tracts(published: Playbook) -> None:
    tom = published.user_of("Tom Watts")
    assert published.held("service_area", f"tract-{tom}") == {
        "external_id": f"tract-{tom}",
        "name": "Tom Watts",
        "service_area_type": "tract",
        "census_tracts": ["41017000800", "41017000900", "41017001001"],
    }


def test_user_service_area_by_canadian_postal_codes(published: Playbook) -> None:
    tom = published.user_of("Tom Watts")
    assert published.held("service_area", f"fsaldu-{tom}") == {
        "external_id": f"fsaldu-{tom}",
        "name": "Tom Watts",
        "service_area_type": "fsaldu",
        "canadian_postal_codes": ["H7M 6J3", "P9A 8M7"],
    }


def test_a_technician_without_areas_tags_or_photo_sends_only_what_it_has(published: Playbook) -> None:
    ana = published.user_of("Ana Ruiz")
    assert published.held("trade_account_user", ana) == {"external_id": ana, "trades": ["Plumbing"]}
    assert f"{ana}/ranking_score" not in published.dispatch.records("user_tag")
    assert ana not in published.dispatch.records("profile_picture")
    assert not [key for key in published.dispatch.records("service_area") if key.endswith(ana)]


# -- Appointments (FSM quick start) and auto assignment ---------------------------------------------------


def test_fsm_appointment_from_a_service_appointment(published: Playbook) -> None:
    visit = published.find("ServiceAppointment", AppointmentNumber="SA-0001")
    known = ids(published)
    assert published.held("appointment", visit, sent=("external_user_id", "external_job_id")) == {
        "external_id": visit,
        "time": "2026-12-01T13:00:00+00:00",
        "duration": 3600,
        "status": "scheduled",
        "window_start_time": "2026-12-01T12:00:00+00:00",
        "window_end_time": "2026-12-01T16:00:00+00:00",
        "external_user_id": published.user_of("Tom Watts"),
        "external_secondary_user_ids": [published.user_of("Ana Ruiz")],
        "external_job_id": known["wo"],
        "external_organization_id": known["spark"],
        "external_type_ids": [published.find("Dispatch_Appointment_Type__c", Name="Installation")],
    }
    header(published, "appointment", version="v3")


def test_auto_assign_technician(published: Playbook) -> None:
    visit = published.find("ServiceAppointment", AppointmentNumber="SA-0001")
    wo = ids(published)["wo"]
    assert published.held("auto_assign_technician", wo) == {
        "external_id": wo,
        "external_appointment_id": visit,
        "external_technician_ids": [published.user_of("Tom Watts")],
        "external_secondary_technician_ids": [published.user_of("Ana Ruiz")],
        "appointment_duration_minutes": 60,
        "address": {"street_1": "1213 Summer St", "city": "Boston", "state": "MA", "postal_code": "01234"},
        "postal_code": "01234",
        "availability_start_time": "2026-12-01T10:00:00+00:00",
        "availability_end_time": "2026-12-01T14:00:00+00:00",
        "override_availability": False,
        "two_tech": False,
    }
    header(published, "auto_assign_technician", version="v3")


# -- Calendar events ---------------------------------------------------------------------------------------


def test_calendar_event(published: Playbook) -> None:
    lunch = published.find("Event", Subject="Lunch")
    assert published.held("calendar_event", lunch, sent=("external_user_id",)) == {
        "external_id": lunch,
        "start_time": "2026-12-01T12:30:00Z",  # the sample's form, which the playbook insists on
        "duration": 3600,  # seconds
        "title": "Lunch",
        "description": "Lunch time",
        "external_organization_id": ids(published)["spark"],
        "external_user_id": published.user_of("Tom Watts"),
    }
    header(published, "calendar_event", version="v1")


def test_a_canceled_calendar_event_is_deleted_with_the_header_action(playbook: Playbook) -> None:
    lunch = playbook.find("Event", Subject="Lunch")
    playbook.publish()
    assert lunch in playbook.dispatch.records("calendar_event")
    playbook.sf.update("Event", lunch, {"Canceled__c": True})
    playbook.publish()
    assert lunch not in playbook.dispatch.records("calendar_event")
    first, second = playbook.wire("calendar_event")
    assert first["header"] == {"record_type": "calendar_event", "version": "v1"}
    assert second["header"] == {"record_type": "calendar_event", "version": "v1", "action": "delete"}


# -- Gateway quick start: a brand's job, sent back with Dispatch's ids ------------------------------------


def _gateway_job(pb: Playbook, **values: Any) -> tuple[int, int, str]:
    """A job the brand created in Dispatch for Spark Electric, and its Gateway_Job__c row in the CRM."""
    pb.publish()
    spark = ids(pb)["spark"]
    job_id = pb.dispatch.create_job(
        title="Brand job",
        address={"street_1": "3913 Ford Street", "city": "Revere", "state": "MA", "postal_code": "02151"},
        customer={"first_name": "Lee", "last_name": "Park"},
        organization_external_id=spark,
    )
    org_id = int(pb.dispatch.records("organization")[spark]["id"])
    row = {
        "Name": "Brand job",
        "Dispatch_Job_Id__c": job_id,
        "Dispatch_Organization_Id__c": str(org_id),
        "Dispatch_Source_Id__c": "brand-7",
        "Dispatch_Send__c": SENT,
        **values,
    }
    return job_id, org_id, pb.sf.insert("Gateway_Job__c", row)


def test_gateway_job_status_update(playbook: Playbook) -> None:
    job_id, org_id, _ = _gateway_job(
        playbook, Status__c="scheduled", Status_Message__c="enroute", Resolution__c="On the way"
    )
    playbook.publish()
    sent = {
        "id": job_id,
        "organization_id": str(org_id),
        "source_id": "brand-7",
        "status": "scheduled",
        "status_message": "enroute",
        "resolution": "On the way",
    }
    [envelope] = [item for item in playbook.wire("job") if "id" in item["record"]]
    assert envelope == {"header": {"record_type": "job", "version": "v3"}, "record": sent}
    job = playbook.dispatch.records("job")[f"#{job_id}"]
    assert {key: job[key] for key in sent} == {**sent, "organization_id": org_id}  # Dispatch's own, as stored


def test_gateway_appointment(playbook: Playbook) -> None:
    job_id, org_id, row = _gateway_job(
        playbook,
        Status__c="scheduled",
        Appointment_Time__c="2026-12-03T22:00:00Z",
        Appointment_Duration_Seconds__c=14400,
        Reschedule_Reminder__c=True,
    )
    playbook.publish()
    assert playbook.held("appointment", f"{row}-appointment", sent=GATEWAY_IDS) == {
        "organization_id": str(org_id),
        "source_id": "brand-7",
        "status": "scheduled",
        "time": "2026-12-03T22:00:00+00:00",
        "duration": 14400,
        "job_id": job_id,
        "external_id": f"{row}-appointment",
        "reschedule_reminder": True,
    }


def test_gateway_note_and_attachment(playbook: Playbook) -> None:
    job_id, org_id, row = _gateway_job(playbook, Status__c="complete")
    permit = playbook.find("ContentVersion", PathOnClient="permit.pdf")
    note = playbook.sf.insert(
        "Gateway_Note__c",
        {
            "Gateway_Job__c": row,
            "Body__c": "Work done",
            "File_Version_Id__c": permit,
            "Dispatch_Send__c": SENT,
        },
    )
    playbook.publish()
    assert playbook.held("attachment", note, sent=GATEWAY_IDS) == {
        "organization_id": str(org_id),
        "job_id": job_id,
        "external_id": note,
        "description": "Work done",
    }
    assert playbook.held("attachment", f"{note}-file", sent=GATEWAY_IDS) == {
        "organization_id": str(org_id),
        "job_id": job_id,
        "external_id": f"{note}-file",
        "file": "JVBERi0xLjQgcGVybWl0",
        "name": "permit.pdf",
    }


# -- Refusals: Dispatch's err event reaches the CRM record's error field and the sync log ------------------


def _refused(pb: Playbook, object_name: str, crm_id: str, *words: str) -> None:
    pb.round_trip()
    error = pb.sf.get(object_name, crm_id)["Dispatch_Error__c"]
    assert error and all(word in error for word in words), error
    assert any(all(word in message for word in words) for message in pb.errors_logged(crm_id))


def test_a_billing_line_without_a_billing_item_is_refused(playbook: Playbook) -> None:
    spark = ids(playbook)["spark"]
    wo = playbook.sf.insert(
        "WorkOrder",
        {
            "Subject": "Estimate with a free-text line",
            "Street": "1 Main St",
            "State": "MA",
            "PostalCode": "02151",
            "Dispatch_Service_Provider__c": spark,
            "Estimate_Status__c": "sent",
            "Dispatch_Send__c": SENT,
        },
    )
    playbook.sf.insert(
        "WorkOrderLineItem",
        {"LineItemNumber": "1", "WorkOrderId": wo, "Description": "Travel", "Quantity": 1, "UnitPrice": 50},
    )
    playbook.publish()
    assert wo in playbook.dispatch.records("job")  # the job itself is fine
    assert f"{wo}-estimate" not in playbook.dispatch.records("billing_document")
    _refused(
        playbook,
        "WorkOrder",
        wo,
        "Problem writing billing_document",
        "line 0: missing external_billing_item_id",
    )


def test_a_job_without_its_organization_is_refused(playbook: Playbook) -> None:
    wo = playbook.sf.insert(
        "WorkOrder",
        {
            "Subject": "No provider yet",
            "Street": "1 Main St",
            "State": "MA",
            "PostalCode": "02151",
            "Dispatch_Send__c": SENT,
        },
    )
    playbook.publish()
    assert wo not in playbook.dispatch.records("job")
    _refused(playbook, "WorkOrder", wo, "Problem writing job", "external_organization_id is required")


def test_a_user_without_an_organization_is_refused(playbook: Playbook) -> None:
    user = playbook.sf.insert(
        "User",
        {
            "Username": "sam.lee@spark.example",
            "Name": "Sam Lee",
            "FirstName": "Sam",
            "LastName": "Lee",
            "Email": "sam.lee@spark.example",
        },
    )
    resource = playbook.sf.insert(
        "ServiceResource",
        {
            "Name": "Sam Lee",
            "IsActive": True,
            "RelatedRecordId": user,
            "Dispatch_Roles__c": "technician",
            "Dispatch_Send__c": SENT,
        },
    )
    playbook.publish()
    assert user not in playbook.dispatch.records("user")
    _refused(
        playbook, "ServiceResource", resource, "Problem writing user", "external_organization_id is required"
    )


def test_a_user_without_email_or_phone_gets_the_playbook_typical_error(playbook: Playbook) -> None:
    spark = ids(playbook)["spark"]
    user = playbook.sf.insert(
        "User", {"Username": "kim@spark.example", "Name": "Kim", "FirstName": "Kim", "LastName": "Ng"}
    )
    resource = playbook.sf.insert(
        "ServiceResource",
        {
            "Name": "Kim Ng",
            "RelatedRecordId": user,
            "Dispatch_Organization__c": spark,
            "Dispatch_Roles__c": "technician",
            "Dispatch_Send__c": SENT,
        },
    )
    playbook.publish()
    _refused(playbook, "ServiceResource", resource, "missing email and phone number - at least one required")
