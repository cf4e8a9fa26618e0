"""The API's routes, one APIRouter per area; each declares its permission and audit action (api/auth.py)."""
