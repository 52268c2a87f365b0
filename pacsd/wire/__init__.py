"""pacsd's own DICOM upper layer (PS3.8) for the hot paths.

pynetdicom runs every association as three threads that hand PDUs and
messages to each other through queues polled with millisecond sleeps, and
decodes every message into primitives and datasets. For a modality sending
thousands of small objects, that machinery is most of the cost of a store
(`scripts/bench` compares the result with Orthanc). This package reads PDUs from the
socket in the association's own thread and hands the command and the
dataset bytes to the domain as they arrived.

It reuses pynetdicom where the work is not per message: decoding the
A-ASSOCIATE-RQ, negotiating presentation contexts and roles, and encoding
the A-ASSOCIATE-AC.
"""
